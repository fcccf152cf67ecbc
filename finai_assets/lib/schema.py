"""The raw schemas and the fixed vocabularies every stage shares."""

from __future__ import annotations

import datetime as dt

PRODUCTS: tuple[str, ...] = (
    "ahor", "aval", "cco", "cder", "cno", "ctju", "ctma", "ctop", "ctpp", "deco", "deme",
    "dela", "ecue", "fond", "hip", "plan", "pres", "reca", "tjcr", "valo", "viv",
    "nomina", "nom_pens", "recibo",
)


def product_column(product: str) -> str:
    """`ind_<product>_fin_ult1`, except the three products the file names without `_fin`."""
    if product in ("nomina", "nom_pens", "recibo"):
        return f"ind_{product}_ult1"
    return f"ind_{product}_fin_ult1"


PRODUCT_COLUMNS: tuple[str, ...] = tuple(product_column(p) for p in PRODUCTS)

# One product-group map serves every product task.
PRODUCT_GROUPS: dict[str, tuple[str, ...]] = {
    "deposits": ("deco", "deme", "dela"),
    "investments": ("fond", "valo", "plan", "cder"),
    "lending": ("hip", "pres", "tjcr", "aval"),
    "payments": ("nomina", "nom_pens", "recibo", "reca"),
    "accounts": ("cco", "cno", "ctju", "ctma", "ctop", "ctpp", "ecue", "ahor", "viv"),
}
GROUP_OF_PRODUCT: dict[str, str] = {p: g for g, ps in PRODUCT_GROUPS.items() for p in ps}
assert sorted(GROUP_OF_PRODUCT) == sorted(PRODUCTS)

SNAPSHOT_ID_COLUMNS: tuple[str, ...] = ("fecha_dato", "ncodpers")
SNAPSHOT_DEMOGRAPHIC_COLUMNS: tuple[str, ...] = (
    "ind_empleado", "pais_residencia", "sexo", "age", "fecha_alta", "ind_nuevo", "antiguedad",
    "indrel", "ult_fec_cli_1t", "indrel_1mes", "tiprel_1mes", "indresi", "indext", "conyuemp",
    "canal_entrada", "indfall", "tipodom", "cod_prov", "nomprov", "ind_actividad_cliente",
    "renta", "segmento",
)
SNAPSHOT_COLUMNS: tuple[str, ...] = (
    SNAPSHOT_ID_COLUMNS + SNAPSHOT_DEMOGRAPHIC_COLUMNS + PRODUCT_COLUMNS
)
assert len(SNAPSHOT_COLUMNS) == 48

TRANSACTION_COLUMNS: tuple[str, ...] = ("ncodpers", "ts", "amount", "mcc", "merchant_id")
TRANSACTION_OPTIONAL_COLUMNS: tuple[str, ...] = ("hour",)

# The Kaggle "Customer Transaction Prediction" shape that gets confused with ours.
WRONG_DATASET_MARKERS: tuple[str, ...] = ("ID_code", "target", "var_0")

def month_date(index: int) -> dt.date:
    """The snapshot date (the 28th) `index` months after 2015-01-28; production months continue it."""
    return dt.date(2015 + index // 12, index % 12 + 1, 28)


def month_index(date: dt.date) -> int:
    """Months since 2015-01 (the inverse of `month_date` for any day of the month)."""
    return (date.year - 2015) * 12 + date.month - 1


SNAPSHOT_MONTHS: tuple[dt.date, ...] = tuple(month_date(m) for m in range(17))
DEFAULT_CUTOFF: dt.date = dt.date(2016, 4, 28)

SEGMENTS: tuple[str, ...] = ("01 - TOP", "02 - PARTICULARES", "03 - UNIVERSITARIO")

# cod_prov -> (nomprov, NUTS-1 region). Spanish INE province codes.
PROVINCES: dict[int, tuple[str, str]] = {
    1: ("ALAVA", "Noreste"), 2: ("ALBACETE", "Centro"), 3: ("ALICANTE", "Este"),
    4: ("ALMERIA", "Sur"), 5: ("AVILA", "Centro"), 6: ("BADAJOZ", "Centro"),
    7: ("BALEARS, ILLES", "Este"), 8: ("BARCELONA", "Este"), 9: ("BURGOS", "Centro"),
    10: ("CACERES", "Centro"), 11: ("CADIZ", "Sur"), 12: ("CASTELLON", "Este"),
    13: ("CIUDAD REAL", "Centro"), 14: ("CORDOBA", "Sur"), 15: ("CORUÑA, A", "Noroeste"),
    16: ("CUENCA", "Centro"), 17: ("GIRONA", "Este"), 18: ("GRANADA", "Sur"),
    19: ("GUADALAJARA", "Centro"), 20: ("GIPUZKOA", "Noreste"), 21: ("HUELVA", "Sur"),
    22: ("HUESCA", "Noreste"), 23: ("JAEN", "Sur"), 24: ("LEON", "Centro"),
    25: ("LERIDA", "Este"), 26: ("RIOJA, LA", "Noreste"), 27: ("LUGO", "Noroeste"),
    28: ("MADRID", "Madrid"), 29: ("MALAGA", "Sur"), 30: ("MURCIA", "Sur"),
    31: ("NAVARRA", "Noreste"), 32: ("OURENSE", "Noroeste"), 33: ("ASTURIAS", "Noroeste"),
    34: ("PALENCIA", "Centro"), 35: ("PALMAS, LAS", "Canarias"), 36: ("PONTEVEDRA", "Noroeste"),
    37: ("SALAMANCA", "Centro"), 38: ("SANTA CRUZ DE TENERIFE", "Canarias"),
    39: ("CANTABRIA", "Noroeste"), 40: ("SEGOVIA", "Centro"), 41: ("SEVILLA", "Sur"),
    42: ("SORIA", "Centro"), 43: ("TARRAGONA", "Este"), 44: ("TERUEL", "Noreste"),
    45: ("TOLEDO", "Centro"), 46: ("VALENCIA", "Este"), 47: ("VALLADOLID", "Centro"),
    48: ("BIZKAIA", "Noreste"), 49: ("ZAMORA", "Centro"), 50: ("ZARAGOZA", "Noreste"),
    51: ("CEUTA", "Sur"), 52: ("MELILLA", "Sur"),
}
REGIONS: tuple[str, ...] = ("Noroeste", "Noreste", "Madrid", "Centro", "Este", "Sur", "Canarias")

AGE_BAND_EDGES: tuple[int, ...] = (25, 40, 55, 70)
AGE_BANDS: tuple[str, ...] = ("<25", "25-39", "40-54", "55-69", "70+")
