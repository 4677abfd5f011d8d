"""The audit command line's pure parts: its request body is a valid spec, a folder is uploaded as
a zip the service can load, the table prints every σ and attack."""

import json

from shared.audits.spec import AuditSpec
from shared.benchmarks.loaders import extract_archive, load_dataset
from shared.reports.summary import summarize
from shared.tools.audit_cli import archive_bytes, spec_from_args
from shared.tools.audit_tables import table
from shared.tools.cli import build_parser
from tests.reports.rows import realistic_rows


def test_submit_options_make_a_valid_spec():
    args = build_parser().parse_args(
        [
            "audit",
            "submit",
            "--count",
            "3",
            "--attacks",
            "pgd,eot",
            "--sigmas",
            "0.2,0.1",
            "--steps",
            "7",
            "--stop-loss",
            "0.69",
            "-n",
            "4",
        ]
    )
    spec = AuditSpec.model_validate(spec_from_args(args, None))
    assert spec.dataset.count == 3 and [a.name for a in spec.attacks] == ["pgd", "eot"]
    assert spec.defense.sigmas == [0.1, 0.2] and spec.defense.num_samples == 4
    assert all(a.steps == 7 and a.stop_loss == 0.69 for a in spec.attacks)
    none = build_parser().parse_args(["audit", "submit", "--attacks", "none", "--dataset", "pope"])
    assert AuditSpec.model_validate(spec_from_args(none, "a" * 64)).attacks == []


def pope_folder(folder):
    """A one-question POPE folder (an image and coco_pope_popular.json)."""
    from shared.benchmarks.shapes import generate_set, render

    (folder / "images").mkdir(parents=True)
    render(generate_set(3, 1)[0][0]).save(folder / "images" / "a.png")
    line = {"question_id": 1, "image": "a.png", "text": "Is there a circle in the image?", "label": "no"}
    (folder / "coco_pope_popular.json").write_text(json.dumps(line) + "\n")
    return folder


def test_a_folder_is_uploaded_as_a_zip_that_loads(tmp_path):
    root = extract_archive(archive_bytes(pope_folder(tmp_path / "pope")), tmp_path / "out")
    (item,) = load_dataset("pope", root).items
    assert item.category == "popular" and item.label == "no"


def test_table_prints_each_sigma_and_attack():
    text = table(summarize(realistic_rows()), "pixel")
    lines = text.splitlines()
    assert lines[0].startswith("defense") and "ASR pgd (not abstained)" in lines[0] and "ASR eot" in lines[0]
    assert lines[2].startswith("undefended") and any(line.startswith("σ=0.1 ") for line in lines)
    assert "noise space: pixel" in lines[-2] and lines[-1].startswith("goal: for pgd")
