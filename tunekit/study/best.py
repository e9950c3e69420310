"""best.yaml: a derived copy of the best trial's concrete config, rewritten whenever the lead changes."""

from __future__ import annotations

from tunekit.config.derive import trial_config
from tunekit.config.yaml_io import dump_yaml
from tunekit.report.summary import pick_best
from tunekit.runs import StudyDir, write_text


def best_text(study, best=None) -> str | None:
    """best.yaml's content for the study storage's best trial, or for `best` when the caller found
    it already (None when no trial completed)."""
    best = best if best is not None else pick_best(study)
    if best is None:
        return None
    raw = trial_config(study.user_attrs, best)
    if raw is None:
        return None
    names = [o["metric"] for o in study.user_attrs.get("tunekit.objectives") or []] or [
        study.user_attrs.get("tunekit.metric")
    ]
    shown = ", ".join(f"{n} = {v:.6g}" for n, v in zip(names, best.values))
    rule = " (Pareto front member best in the first objective)" if len(best.values) > 1 else ""
    header = f"# best trial #{best.number} of study '{study.study_name}'{rule}: {shown}\n"
    return header + dump_yaml(raw)


def write_best(study, study_dir: StudyDir, best=None) -> None:
    """Write best.yaml from the study storage's best trial, or `best` (nothing when no trial completed)."""
    text = best_text(study, best)
    if text is not None:
        write_text(study_dir.best_yaml, text)


def refresh_best(study, study_dir: StudyDir) -> None:
    """Rewrite best.yaml when it is missing, edited, corrupt or stale (another machine's trial took the
    lead, say). It is only ever a copy: nothing reads it back as the truth."""
    text = best_text(study)
    path = study_dir.best_yaml
    try:
        current = path.read_text(encoding="utf-8") if path.is_file() and not path.is_symlink() else None
    except (OSError, UnicodeDecodeError):
        current = None
    if text is not None and current != text:
        write_text(path, text)
