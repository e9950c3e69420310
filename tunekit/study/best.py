"""best.yaml: a derived copy of the best trial's concrete config, rewritten whenever the lead changes."""

from __future__ import annotations

from tunekit.config.yaml_io import dump_yaml
from tunekit.report.summary import pick_best
from tunekit.runs import StudyDir, write_text


def write_best(study, study_dir: StudyDir) -> None:
    """Write best.yaml from the study storage's best trial (nothing when no trial completed)."""
    best = pick_best(study)
    if best is None:
        return
    raw = best.user_attrs.get("config")
    if raw is not None:
        names = [o["metric"] for o in study.user_attrs.get("tunekit.objectives") or []] or [
            study.user_attrs.get("tunekit.metric")
        ]
        shown = ", ".join(f"{n} = {v:.6g}" for n, v in zip(names, best.values))
        rule = " (Pareto front member best in the first objective)" if len(best.values) > 1 else ""
        header = f"# best trial #{best.number} of study '{study.study_name}'{rule}: {shown}\n"
        write_text(study_dir.best_yaml, header + dump_yaml(raw))
