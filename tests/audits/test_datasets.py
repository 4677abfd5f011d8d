"""Dataset uploads on the real stack: judged at the door by what is cheap, stored, then checked by an
``audits`` worker under the deployment's caps to ``ready`` or ``invalid`` with the reason — a bomb,
too many members, a huge line, invalid UTF-8, deep nesting, a list-valued id — while the worker
lives on; audits take ready datasets only; the sweeper re-sends a lost check."""

import io
import json
import tarfile
import uuid
import zipfile
from pathlib import Path

from shared.audits.datasets import MAX_CHECK_ATTEMPTS, check_dataset, sweep_datasets
from shared.db import session_scope
from shared.models import DatasetArchive
from shared.pipeline import Message, Step
from tests.audits.test_audits import pope_archive, small_spec, wait_dataset  # noqa: F401  (the good POPE archive fixture)
from tests.helpers import auth

MiB = 2**20
CAPS = {  # the worker's caps, scaled down so that each bad archive is small and quick
    "SMOOTHGUARD_MAX_DATASET_EXTRACTED_BYTES": str(32 * MiB),
    "SMOOTHGUARD_MAX_DATASET_MEMBERS": "500",
    "SMOOTHGUARD_MAX_DATASET_LINE_BYTES": str(64 * 2**10),
    "SMOOTHGUARD_MAX_DATASET_JSON_BYTES": str(4 * MiB),
}


def zipped(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def zip_bomb(size):
    """One member of ``size`` zero bytes, deflated ~1000:1."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("pope/images/zeros.png", "w") as out:
        for _ in range(size // MiB):
            out.write(bytes(MiB))
    return buf.getvalue()


def pope_lines(*lines: bytes) -> bytes:
    return zipped({"pope/coco_pope_random.json": b"\n".join(lines) + b"\n", "pope/images/a.png": b"x"})


GOOD_LINE = b'{"question_id": 1, "image": "a.png", "text": "Is there a cat?", "label": "yes"}'
REASONS = {  # each bad archive, and what its reason says
    "bomb": f"more than {32 * MiB} bytes",
    "tar.gz bomb": f"more than {32 * MiB} bytes",
    "members": "more than 500 members",
    "huge line": "a line over 65536 bytes",
    "utf-8": "coco_pope_random.json:2: not UTF-8",
    "nesting": "nested too deeply",
    "list id": "field 'question_id' is a list",
}


def bad_archives(tmp_path: Path) -> dict[str, bytes]:
    return {
        "bomb": zip_bomb(256 * MiB),
        "tar.gz bomb": tar_gz_bomb(tmp_path, 128 * MiB),
        "members": zipped({f"pope/{n}.txt": b"" for n in range(600)}),
        "huge line": pope_lines(b'{"text": "' + b"a" * (2 * MiB) + b'"}'),
        "utf-8": pope_lines(GOOD_LINE, GOOD_LINE.replace(b"cat", b"\xff\xfe")),
        "nesting": pope_lines(b'{"question_id": ' + b"[" * 20000 + b"]" * 20000 + b"}"),
        "list id": pope_lines(GOOD_LINE.replace(b"1,", b"[1, 2],")),
    }


def tar_gz_bomb(tmp_path: Path, size: int) -> bytes:
    path = tmp_path / "zeros"
    with path.open("wb") as f:
        f.truncate(size)  # sparse: the test writes no gigabyte
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tf:
        tf.add(path, "pope/images/zeros.png")
    return buf.getvalue()


def upload(client, key, data, fmt="pope"):
    return client.post("/v1/datasets", headers=auth(key), files={"file": ("set.zip", data)}, data={"format": fmt})


def peak_rss_kib(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def test_archives_are_checked_by_a_worker_to_ready_or_invalid_with_the_reason(
    client,
    keys,
    spawn_worker,
    pope_archive,  # noqa: F811
    tmp_path,
):
    key = keys["alpha"]
    archives = bad_archives(tmp_path) | {"good": pope_archive}
    assert len(archives["bomb"]) < MiB / 2  # 256 MiB of zeros, 8× the cap
    uploaded = {}
    for name, data in archives.items():
        r = upload(client, key, data)
        assert r.status_code == 202 and r.headers["Location"] == f"/v1/datasets/{r.json()['id']}", r.text
        assert r.json()["status"] == "validating"
        uploaded[name] = r.json()
    good = uploaded["good"]
    again = upload(client, key, pope_archive)
    assert again.status_code == 200 and again.json()["id"] == good["id"]  # the same bytes and format: one dataset
    spec = small_spec(dataset={"format": "pope", "archive": good["sha256"]})
    r = client.post("/v1/audits", headers=auth(key), json=spec)
    assert r.status_code == 422 and "is validating" in r.json()["detail"]  # no worker has checked it yet

    worker = spawn_worker(("audits",), **CAPS)
    checked = {name: wait_dataset(client, key, d["id"]) for name, d in uploaded.items()}
    for name, reason in REASONS.items():
        assert checked[name]["status"] == "invalid" and reason in checked[name]["error"], (name, checked[name])
    assert checked["good"]["status"] == "ready" and checked["good"]["items"] == 2, checked["good"]
    assert worker.poll() is None  # alive: every bad archive was judged, not crashed on
    print(f"audits worker peak RSS after the checks: {peak_rss_kib(worker.pid) / 1024:.0f} MiB")

    bomb = {"format": "pope", "archive": uploaded["bomb"]["sha256"]}
    r = client.post("/v1/audits", headers=auth(key), json=small_spec(dataset=bomb))
    assert r.status_code == 422 and "is invalid" in r.json()["detail"] and "bytes" in r.json()["detail"]
    r = client.post("/v1/audits", headers=auth(key), json=spec)
    assert r.status_code == 202, r.text  # ready: the audit is accepted (test_audits runs one to the end)
    listed = client.get("/v1/datasets", headers=auth(key)).json()["items"]
    assert {d["id"] for d in listed} == {d["id"] for d in uploaded.values()}
    assert client.get(f"/v1/datasets/{good['id']}", headers=auth(keys["beta"])).status_code == 404


def test_what_the_door_refuses_is_not_stored(client, keys, store):
    key = keys["alpha"]
    stored = len(list(store.client.list_objects(store.bucket, prefix="datasets/", recursive=True)))
    for data, fmt, words in [
        (b"plain text, not an archive", "pope", "not a zip or tar"),
        (zipped({"a.txt": b"x"}), "shapes", "generated"),
        (zipped({"a.txt": b"x"}), "coco", "format"),
    ]:
        r = upload(client, key, data, fmt)
        assert r.status_code == 422 and words in json.dumps(r.json()), r.text
    assert client.get("/v1/datasets", headers=auth(key)).json()["items"] == []
    assert len(list(store.client.list_objects(store.bucket, prefix="datasets/", recursive=True))) == stored


def test_a_lost_check_is_sent_again_and_a_check_that_keeps_dying_ends_invalid(client, keys, settings):
    key = keys["alpha"]
    dataset_id = upload(client, key, zipped({"pope/a.txt": b"x"})).json()["id"]
    assert sweep_datasets(settings) == []  # not stale yet
    stale = settings.model_copy(update={"stale_after_s": 0.0})
    assert sweep_datasets(stale) == [Message(Step.CHECK_DATASET, (dataset_id,))]
    with session_scope(settings.database_url) as s:
        s.get(DatasetArchive, uuid.UUID(dataset_id)).attempts = MAX_CHECK_ATTEMPTS  # its worker died each time
    assert check_dataset(settings, dataset_id) == []
    d = client.get(f"/v1/datasets/{dataset_id}", headers=auth(key)).json()
    assert d["status"] == "invalid" and f"stopped {MAX_CHECK_ATTEMPTS} times" in d["error"]
    assert sweep_datasets(stale) == []  # judged: nothing to re-send
