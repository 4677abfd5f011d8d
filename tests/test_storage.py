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
