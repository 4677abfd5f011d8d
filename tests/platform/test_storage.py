import urllib.request


def test_same_bytes_are_one_object(store):
    key1, sha1 = store.put_media("tenant-a", b"\x89PNG same bytes", "image/png")
    key2, sha2 = store.put_media("tenant-a", b"\x89PNG same bytes", "image/png")
    assert key1 == key2 == f"media/tenant-a/{sha1}" and sha1 == sha2
    objects = list(store.client.list_objects(store.bucket, prefix="media/tenant-a/", recursive=True))
    assert [o.object_name for o in objects] == [key1]
    assert store.get(key1) == b"\x89PNG same bytes"
    other, _ = store.put_media("tenant-b", b"\x89PNG same bytes", "image/png")
    assert other != key1 and store.exists(other)


def test_presigned_link_downloads_without_credentials(store):
    key, _ = store.put_media("tenant-a", b"payload", "application/octet-stream")
    with urllib.request.urlopen(store.presigned_url(key), timeout=10) as response:
        assert response.read() == b"payload"
    assert not store.exists("media/tenant-a/" + "0" * 64)


def test_presigned_links_name_the_public_endpoint(stack, store):
    """Behind compose the services reach S3 as minio:9000; callers get links for the public host."""
    from shared.storage import ObjectStore

    port = stack.env["SMOOTHGUARD_S3_ENDPOINT"].rsplit(":", 1)[1]
    settings = stack.settings(SMOOTHGUARD_S3_BUCKET=store.bucket, SMOOTHGUARD_S3_PUBLIC_ENDPOINT=f"localhost:{port}")
    public = ObjectStore.from_settings(settings)
    key, _ = public.put_media("tenant-a", b"for callers", "application/octet-stream")
    url = public.presigned_url(key)
    assert url.startswith(f"http://localhost:{port}/")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"for callers"


def test_concurrent_uploads_of_the_same_bytes_make_one_media_row(database, store):
    """Eight requests racing with the same image meet on the unique key (no 500s)."""
    import threading
    import uuid

    from shared.config import DEMO_IMAGE
    from shared.db import session_scope
    from shared.media.store import save_media
    from shared.tenants import create_tenant

    with session_scope(database) as s:
        tenant_id = create_tenant(s, name=f"t{uuid.uuid4().hex[:6]}").id
    ids, barrier = [], threading.Barrier(8)

    def upload():
        barrier.wait()
        with session_scope(database) as s:
            ids.append(
                save_media(
                    s,
                    store,
                    tenant_id=tenant_id,
                    data=DEMO_IMAGE.read_bytes(),
                    content_type="image/png",
                    modality="image",
                ).id
            )

    threads = [threading.Thread(target=upload) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1
