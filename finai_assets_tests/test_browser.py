"""A real browser against the real UI: headless Debian Chromium, driven by selenium,
against `dagster dev` (webserver + daemon) on 127.0.0.1.

`dagster dev` runs with a fresh DAGSTER_HOME holding the committed `.dagster/dagster.yaml` (its
run and pool limits; the QueuedRunCoordinator, so the daemon dequeues the UI's run, P8) and a
fresh FINAI_DATA_DIR. The first visit dismisses Dagster's "Join the Dagster community" dialog
(it opens over the page on a fresh instance). The module checks, through what the browser shows:

1. the asset lineage graph of the `raw` group renders with its asset nodes, and the global graph,
   every group expanded, draws every asset; the `teacher_evaluation` page shows its checks;
2. the "Materialize" button on the santander_raw asset page launches a run;
3. that run succeeds (its run page) and the asset page then shows santander_raw's latest
   materialization (the run id cross-checked with one GraphQL query).

Screenshots and the `dagster dev` log go to `test-artifacts/browser/`. The browser never skips:
without Chromium the module fails and says to run `make browser`.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import dagster as dg
import pytest

from finai_assets_tests.conftest import REPO, declared_checks
from finai_assets_tests.servers import DagsterDev, dagster_home, tail
from finai_assets_tests.servers import dagster_dev as start_dagster_dev

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = REPO / "test-artifacts" / "browser"
LOCATION = "finai_assets"
RAW_GROUP_ASSETS = ("santander_raw", "card_transactions_raw", "customer_profiles")
UI_TIMEOUT_S = 60  # an element the UI renders without any run
RUN_TIMEOUT_S = 180  # santander_raw takes ~10 s on the embedded sample, plus queue and process start
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WINDOW = (1600, 1000)
INSTALL_HINT = "run `make browser` (apt-installs Debian chromium + chromium-driver)"
pytestmark = [pytest.mark.browser, pytest.mark.server]

LATEST_MATERIALIZATION_QUERY = """
{ assetOrError(assetKey: {path: ["santander_raw"]}) { __typename
    ... on Asset { assetMaterializations(limit: 1) { runId runOrError { __typename ... on Run { status } } } } } }
"""

# XPath pieces, keyed on visible text rather than on generated class names.
MATERIALIZE_BUTTON = "//button[normalize-space(.)='Materialize' and not(@disabled)]"
# A launch confirmation (launchpad or "materialize with upstream"-style dialog), if one opens.
DIALOG_CONFIRM = (
    "//*[@role='dialog' or contains(@class,'dialog') or contains(@class,'Dialog')]"
    "//button[not(@disabled)][normalize-space(.)='Launch run' or normalize-space(.)='Materialize'"
    " or starts-with(normalize-space(.),'Materialize ') or normalize-space(.)='Confirm']"
)
RUN_LINK = "//a[contains(@href,'/runs/')]"


# --------------------------------------------------------------------------- helpers


def _shot(driver, name: str) -> Path:
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def _body_text(driver) -> str:
    from selenium.common.exceptions import WebDriverException

    try:
        return driver.find_element("tag name", "body").text
    except WebDriverException:  # the page is re-rendering
        return ""


def _wait_for(driver, what: str, predicate, timeout: float, shot: str, poll: float = 0.5, reload_every: float | None = None):
    """Poll `predicate(driver)` until it returns something truthy; on timeout screenshot and fail."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    deadline = time.monotonic() + timeout
    last_reload = time.monotonic()
    while True:
        try:
            result = predicate(driver)
        except (StaleElementReferenceException, WebDriverException):
            result = None
        if result:
            return result
        now = time.monotonic()
        if now > deadline:
            path = _shot(driver, shot)
            pytest.fail(
                f"timed out after {timeout:.0f} s waiting for {what} at {driver.current_url} (screenshot {path})\n"
                f"--- page text ---\n{_body_text(driver)[:2000]}"
            )
        if reload_every and now - last_reload > reload_every:
            driver.refresh()
            last_reload = now
        time.sleep(poll)


def _visible(driver, xpath: str) -> list:
    return [e for e in driver.find_elements("xpath", xpath) if e.is_displayed()]


def _in_viewport(driver, element) -> bool:
    return driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0"
        " && r.right <= window.innerWidth && r.bottom <= window.innerHeight;",
        element,
    )


def _dismiss_community_dialog(driver, dagster_dev: DagsterDev) -> None:
    """The first visit to a fresh DAGSTER_HOME opens the "Join the Dagster community" dialog a
    second after the page renders, over whatever the page shows: wait for it, click "Skip", and
    check that the instance remembers it (so no later page load opens it again)."""
    dialog = "//*[@role='dialog'][.//*[normalize-space(text())='Join the Dagster community']]"
    _wait_for(driver, "the first-visit community dialog", lambda d: _visible(d, dialog), UI_TIMEOUT_S, "community-dialog-timeout.png")
    _shot(driver, "community-dialog.png")
    _visible(driver, f"{dialog}//button[normalize-space(.)='Skip']")[0].click()
    _wait_for(driver, "the community dialog to close", lambda d: not _visible(d, dialog), UI_TIMEOUT_S, "community-dialog-close-timeout.png")
    assert dagster_dev.gql("{ shouldShowNux }") == {"shouldShowNux": False}


def _graph_node(driver, name: str):
    """The asset graph node labelled `name`: inside the graph's SVG, displayed, within the window."""
    labels = _visible(driver, f"//*[local-name()='svg']//*[normalize-space(text())='{name}']")
    return next((e for e in labels if _in_viewport(driver, e)), None)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium. Requested before `dagster_dev` so that a missing browser fails fast."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"the browser test needs {' and '.join(missing)}: {INSTALL_HINT}")
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.fail(f"selenium is not installed ({exc}): install the dev extra (`make venv`) and {INSTALL_HINT}")

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}")
    service = Service(executable_path=CHROMEDRIVER, log_output=str(ARTIFACTS / "chromedriver.log"))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as exc:
        pytest.fail(f"headless Chromium did not start: {exc.msg}\n{INSTALL_HINT}; see {ARTIFACTS / 'chromedriver.log'}")
    driver.set_page_load_timeout(UI_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory) -> DagsterDev:
    """`dagster dev` (webserver + daemon) on a free port with the committed instance config and a
    fresh data folder; automation off, so only the UI's click starts a run."""
    home = dagster_home(tmp_path_factory.mktemp("dagster_home"))
    env = {"FINAI_AUTOMATION": "off", "FINAI_RETRAIN_ON_DRIFT": "off"}
    with start_dagster_dev(home, tmp_path_factory.mktemp("finai_data"), ARTIFACTS / "dagster-dev.log", env) as server:
        yield server


@pytest.fixture(scope="module")
def ui(browser, dagster_dev):
    """The browser after its first visit (the global lineage page), the community dialog dismissed."""
    browser.get(f"{dagster_dev.base}/asset-groups")
    _dismiss_community_dialog(browser, dagster_dev)
    return browser


@pytest.fixture(scope="module")
def ui_launch(ui, dagster_dev) -> dict:
    """Click "Materialize" on the santander_raw asset page; returns the run the UI says it launched."""
    driver = ui
    driver.get(f"{dagster_dev.base}/assets/santander_raw")
    button = _wait_for(driver, 'the "Materialize" button', lambda d: (_visible(d, MATERIALIZE_BUTTON) or [None])[0], UI_TIMEOUT_S, "materialize-button-timeout.png")
    before = {a.get_attribute("href") for a in driver.find_elements("xpath", RUN_LINK)}
    button.click()

    def launched(d):
        confirm = _visible(d, DIALOG_CONFIRM)
        if confirm:  # santander_raw needs no config, so no dialog is expected; accept one if it opens
            confirm[-1].click()
            return None
        if "Launched run" not in _body_text(d):
            return None
        links = [a.get_attribute("href") for a in _visible(d, RUN_LINK)]
        return next((h for h in links if h not in before and re.search(r"/runs/[0-9a-f-]{36}", h or "")), None)

    href = _wait_for(driver, 'the "Launched run" notice with its run link', launched, UI_TIMEOUT_S, "after-click-timeout.png", poll=0.2)
    _shot(driver, "after-click.png")
    return {"run_id": re.search(r"/runs/([0-9a-f-]{36})", href).group(1), "href": href, "notice": _body_text(driver)}


# --------------------------------------------------------------------------- tests


def test_lineage_graph_renders_asset_nodes(ui, dagster_dev):
    ui.get(f"{dagster_dev.base}/locations/{LOCATION}/asset-groups/raw")
    for name in RAW_GROUP_ASSETS:
        _wait_for(ui, f"the asset graph node {name}", lambda d, n=name: _graph_node(d, n), UI_TIMEOUT_S, "lineage-timeout.png")
    # The graph draws its edges: santander_raw and card_transactions_raw feed customer_profiles.
    edges = ui.find_elements("xpath", "//*[local-name()='svg']//*[local-name()='path']")
    assert len(edges) >= 2, f"{len(edges)} SVG paths in the lineage graph"
    _shot(ui, "lineage.png")


def _shows(label: str, name: str) -> bool:
    """A graph node's label is the asset name, or the name shortened in the middle with "…"."""
    if "…" not in label:
        return label == name
    head, _, tail_ = label.partition("…")
    return len(name) > len(head) + len(tail_) and name.startswith(head) and name.endswith(tail_)


def test_the_expanded_asset_graph_shows_every_asset(ui, dagster_dev):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    assets = list(declared_checks())
    ui.set_window_size(2000, 3000)  # tall enough for the whole expanded graph at a legible zoom
    try:
        ui.get(f"{dagster_dev.base}/asset-groups")
        _wait_for(ui, "the global asset graph", lambda d: _visible(d, "//*[local-name()='foreignObject']"), UI_TIMEOUT_S, "asset-graph-timeout.png")
        # A first visit shows every group collapsed; Alt+E is the graph's "Expand all groups".
        ActionChains(ui).key_down(Keys.ALT).send_keys("e").key_up(Keys.ALT).perform()

        def every_asset_drawn(d):
            labels = [e.text.strip() for e in d.find_elements("xpath", "//*[local-name()='foreignObject']//div[not(*)]")]
            missing = [a for a in assets if not any(_shows(label, a) for label in labels)]
            return not missing

        _wait_for(ui, f"all {len(assets)} asset nodes in the expanded graph", every_asset_drawn, UI_TIMEOUT_S, "asset-graph-timeout.png")
        time.sleep(1.0)  # the edges settle after the nodes
        _shot(ui, "asset-graph.png")
    finally:
        ui.set_window_size(*WINDOW)


def test_the_teacher_evaluation_page_shows_its_description_and_checks(ui, dagster_dev):
    from finai_assets.definitions import defs

    node = defs().resolve_asset_graph().get(dg.AssetKey("teacher_evaluation"))
    opening = " ".join(node.description.split()[:4])
    ui.get(f"{dagster_dev.base}/assets/teacher_evaluation")
    _wait_for(ui, "the teacher_evaluation overview", lambda d: opening in _body_text(d) and "Never materialized" in _body_text(d),
              UI_TIMEOUT_S, "teacher-evaluation-timeout.png")
    _shot(ui, "teacher-evaluation.png")
    checks = declared_checks()["teacher_evaluation"]
    ui.get(f"{dagster_dev.base}/assets/teacher_evaluation?view=checks")
    _wait_for(ui, f"the checks {sorted(checks)} on the Checks tab", lambda d: all(c in _body_text(d) for c in checks),
              UI_TIMEOUT_S, "teacher-evaluation-checks-timeout.png")
    _shot(ui, "teacher-evaluation-checks.png")


def test_materialize_button_launches_a_run(ui_launch):
    run_id = ui_launch["run_id"]
    assert f"Launched run {run_id[:8]}" in ui_launch["notice"], ui_launch["notice"][:500]


def test_run_succeeds_and_asset_shows_materialized(ui, dagster_dev, ui_launch):
    run_id = ui_launch["run_id"]
    driver = ui
    driver.get(ui_launch["href"])  # the run page the UI's notice links to

    def run_finished(d):
        text = _body_text(d)
        if re.search(r"\b(Failure|Failed|Canceled)\b", text) and run_id[:8] in text:
            return "failed"
        if re.search(r"\bSuccess\b", text) and run_id[:8] in text:
            return "succeeded"
        return None

    outcome = _wait_for(driver, f"run {run_id[:8]} to finish", run_finished, RUN_TIMEOUT_S, "run-timeout.png", poll=1.0, reload_every=30)
    _shot(driver, "run.png")
    assert outcome == "succeeded", f"the run page shows run {run_id} failed; see {ARTIFACTS / 'run.png'}\n{tail(dagster_dev.log, 30)}"

    driver.get(f"{dagster_dev.base}/assets/santander_raw")

    def shows_materialized(d):  # the status card: "Latest materialization" with a relative time ("a minute ago")
        text = _body_text(d)
        return ("Latest materialization" in text and "Never materialized" not in text and "Failed in" not in text
                and re.search(r"\b(a few seconds|\w+ (second|minute)s?) ago\b", text))

    _wait_for(driver, "the asset page to show the materialization", shows_materialized, UI_TIMEOUT_S, "materialized-timeout.png", reload_every=15)
    _shot(driver, "materialized.png")

    # One GraphQL cross-check: the latest materialization is this run's and the run succeeded.
    asset = dagster_dev.gql(LATEST_MATERIALIZATION_QUERY)["assetOrError"]
    assert asset["__typename"] == "Asset", asset
    (latest,) = asset["assetMaterializations"]
    assert latest["runId"] == run_id, (latest, run_id)
    assert latest["runOrError"] == {"__typename": "Run", "status": "SUCCESS"}, latest
