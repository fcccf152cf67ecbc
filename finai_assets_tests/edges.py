"""The asset graph's contract: every asset's group, whether it is partitioned, and the upstream
assets it must have at least. The loaded graph may add edges (an asset that reads another's stored
data declares it); it may not drop one of these."""

CONTRACT_EDGES = {
    "santander_raw": ("raw", False, {"production_snapshots"}),
    "card_transactions_raw": ("raw", False, set()),
    "customer_profiles": ("raw", False, {"santander_raw", "card_transactions_raw"}),
    "synthetic_calibration": ("synthetic", False, {"customer_profiles", "santander_raw"}),
    "synthetic_customers": ("synthetic", True, {"synthetic_calibration"}),
    "synthetic_ground_truth": ("synthetic", True, {"synthetic_calibration"}),
    "candidate_labels": ("labels", True, {"synthetic_customers"}),
    "split_assignments": ("features", True, {"synthetic_customers", "candidate_labels"}),
    "task_labels": ("labels", True, {"candidate_labels", "split_assignments", "synthetic_customers"}),
    "feature_pipeline": ("features", True, {"synthetic_customers", "split_assignments"}),
    "feature_table": ("features", True, {"synthetic_customers", "feature_pipeline"}),
    "oracle_report": ("features", True, {"synthetic_ground_truth", "task_labels", "split_assignments"}),
    "leakage_report": ("features", True, {"feature_table", "task_labels", "split_assignments", "oracle_report"}),
    "ple_teacher": ("teacher", True, {"feature_table", "task_labels", "split_assignments", "leakage_report"}),
    "baseline_models": ("teacher", True, {"feature_table", "task_labels", "split_assignments", "leakage_report"}),
    "teacher_predictions": ("teacher", True, {"ple_teacher", "feature_table", "leakage_report"}),
    "teacher_evaluation": ("teacher", True, {"teacher_predictions", "baseline_models", "oracle_report", "task_labels", "split_assignments"}),
    "distilled_students": ("students", True, {"teacher_predictions", "teacher_evaluation", "feature_table", "task_labels", "split_assignments",
                                              "leakage_report"}),
    "fidelity_report": ("students", True, {"distilled_students", "teacher_predictions", "teacher_evaluation", "task_labels", "split_assignments"}),
    "fairness_report": ("governance", True, {"distilled_students", "teacher_predictions", "task_labels", "split_assignments", "synthetic_customers"}),
    "promotion_decision": ("governance", True, {"fidelity_report", "fairness_report", "teacher_evaluation", "distilled_students", "feature_table",
                                                "task_labels", "split_assignments"}),
    "champion_model": ("governance", False, {"promotion_decision"}),
    "production_snapshots": ("production", True, set()),
    "production_scores": ("production", True, {"production_snapshots", "santander_raw", "card_transactions_raw", "champion_model"}),
    "drift_report": ("production", True, {"production_scores", "champion_model"}),
    "production_fairness": ("production", True, {"production_scores"}),
    "production_outcomes": ("production", True, {"production_scores", "production_snapshots"}),
}


def loaded_edges() -> dict[str, tuple[str, bool, set[str]]]:
    """asset -> (group, partitioned, upstream assets) as the loaded definitions declare them."""
    from finai_assets.definitions import defs

    graph = defs().resolve_asset_graph()
    out = {}
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        out[key.to_user_string()] = (node.group_name, node.is_partitioned, {p.to_user_string() for p in node.parent_keys})
    return out


def contract_violations(actual: dict[str, tuple[str, bool, set[str]]]) -> list[str]:
    """Every way `actual` departs from the contract: an asset added or missing, another group or
    partitioning, a contract edge absent. Extra edges are not violations."""
    problems = [f"{a}: not in the contract" for a in sorted(set(actual) - set(CONTRACT_EDGES))]
    for asset, (group, partitioned, upstream) in CONTRACT_EDGES.items():
        if asset not in actual:
            problems.append(f"{asset}: missing from the graph")
            continue
        got_group, got_partitioned, got_upstream = actual[asset]
        if (got_group, got_partitioned) != (group, partitioned):
            problems.append(f"{asset}: group/partitioned {(got_group, got_partitioned)}, expected {(group, partitioned)}")
        if upstream - got_upstream:
            problems.append(f"{asset}: lacks the edges from {sorted(upstream - got_upstream)}")
    return problems
