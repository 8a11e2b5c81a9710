"""boto3 against the S3 gateway of `lakefs-fuse serve`, configured the way the lakeFS docs recommend.

Bucket = repository, keys start with the branch. Repositories are created through the REST API.
"""
import base64
import hashlib
import json
import urllib.request

import boto3
from boto3.s3.transfer import TransferConfig
import botocore.config
import botocore.exceptions
import pytest
import requests

from conftest import ACCESS_KEY_ID, SECRET_ACCESS_KEY

MiB = 1024 * 1024


def create_repository(endpoint, name, branch="main"):
    body = json.dumps({"name": name, "storage_namespace": f"local://{name}", "default_branch": branch}).encode()
    request = urllib.request.Request(endpoint + "/api/v1/repositories", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    token = base64.b64encode(f"{ACCESS_KEY_ID}:{SECRET_ACCESS_KEY}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201


@pytest.fixture
def s3(server):
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        region_name="us-east-1",
        config=botocore.config.Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


@pytest.fixture
def repo(server, repo_name):
    create_repository(server.endpoint, repo_name)
    return repo_name


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def test_put_get_head_metadata(s3, repo):
    body = b"hello from boto3"
    put = s3.put_object(Bucket=repo, Key="main/a/hello.txt", Body=body, ContentType="text/plain",
                        Metadata={"Owner": "data-team"})
    assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
    got = s3.get_object(Bucket=repo, Key="main/a/hello.txt")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"owner": "data-team"}
    head = s3.head_object(Bucket=repo, Key="main/a/hello.txt")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == put["ETag"]


def test_range_requests(s3, repo):
    body = bytes(range(256)) * 10
    s3.put_object(Bucket=repo, Key="main/range.bin", Body=body)
    got = s3.get_object(Bucket=repo, Key="main/range.bin", Range="bytes=100-199")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes 100-199/{len(body)}"
    assert got["Body"].read() == body[100:200]
    assert s3.get_object(Bucket=repo, Key="main/range.bin", Range="bytes=-10")["Body"].read() == body[-10:]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=repo, Key="main/range.bin", Range=f"bytes={len(body)}-")
    assert error_code(excinfo) == "InvalidRange"


def test_missing_key_and_non_branch_write(s3, repo):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_object(Bucket=repo, Key="main/nope")
    assert error_code(excinfo) == "NoSuchKey"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.put_object(Bucket=repo, Key="nobranch/x", Body=b"x")
    assert error_code(excinfo) == "NoSuchBucket"


def test_list_objects_v2_paginator(s3, repo):
    keys = [f"main/data/{i:03d}.csv" for i in range(25)] + ["main/other/x", "main/top"]
    for key in keys:
        s3.put_object(Bucket=repo, Key=key, Body=key.encode())
    paginator = s3.get_paginator("list_objects_v2")
    listed = [o["Key"] for page in paginator.paginate(Bucket=repo, Prefix="main/", PaginationConfig={"PageSize": 7})
              for o in page.get("Contents", [])]
    assert listed == sorted(keys)

    out = s3.list_objects_v2(Bucket=repo, Prefix="main/", Delimiter="/")
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["main/data/", "main/other/"]
    assert [o["Key"] for o in out["Contents"]] == ["main/top"]
    assert out["KeyCount"] == 3

    branches = s3.list_objects_v2(Bucket=repo, Delimiter="/")
    assert [p["Prefix"] for p in branches["CommonPrefixes"]] == ["main/"]

    v1 = s3.list_objects(Bucket=repo, Prefix="main/data/", MaxKeys=10)
    assert v1["IsTruncated"] is True
    assert len(v1["Contents"]) == 10

    assert repo in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_copy_and_delete(s3, repo):
    s3.put_object(Bucket=repo, Key="main/src", Body=b"source", Metadata={"k": "v"})
    s3.copy_object(Bucket=repo, Key="main/dst", CopySource={"Bucket": repo, "Key": "main/src"})
    got = s3.get_object(Bucket=repo, Key="main/dst")
    assert got["Body"].read() == b"source"
    assert got["Metadata"] == {"k": "v"}
    s3.copy_object(Bucket=repo, Key="main/dst2", CopySource=f"{repo}/main/src", MetadataDirective="REPLACE",
                   Metadata={"n": "1"})
    assert s3.head_object(Bucket=repo, Key="main/dst2")["Metadata"] == {"n": "1"}

    assert s3.delete_object(Bucket=repo, Key="main/dst")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket=repo, Key="main/dst")

    out = s3.delete_objects(Bucket=repo, Delete={"Objects": [{"Key": "main/src"}, {"Key": "main/dst2"},
                                                             {"Key": "main/never"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["main/dst2", "main/never", "main/src"]
    assert not out.get("Errors")
    quiet = s3.delete_objects(Bucket=repo, Delete={"Objects": [{"Key": "main/x"}], "Quiet": True})
    assert not quiet.get("Deleted")
    assert s3.list_objects_v2(Bucket=repo, Prefix="main/").get("KeyCount") == 0


def test_multipart_upload_file(s3, repo, tmp_path):
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_file(str(path), repo, "main/big.bin", Config=config)
    head = s3.head_object(Bucket=repo, Key="main/big.bin")
    assert head["ContentLength"] == len(data)
    parts = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    assert head["ETag"] == f'"{expected}"'
    out = tmp_path / "back.bin"
    s3.download_file(repo, "main/big.bin", str(out), Config=config)
    assert out.read_bytes() == data


def test_multipart_low_level_and_abort(s3, repo):
    upload = s3.create_multipart_upload(Bucket=repo, Key="main/mp")
    part1 = s3.upload_part(Bucket=repo, Key="main/mp", UploadId=upload["UploadId"], PartNumber=1,
                           Body=b"a" * (5 * MiB))
    part2 = s3.upload_part(Bucket=repo, Key="main/mp", UploadId=upload["UploadId"], PartNumber=2, Body=b"tail")
    listed = s3.list_parts(Bucket=repo, Key="main/mp", UploadId=upload["UploadId"])
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2]
    done = s3.complete_multipart_upload(
        Bucket=repo, Key="main/mp", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part1["ETag"]},
                                   {"PartNumber": 2, "ETag": part2["ETag"]}]})
    assert done["ETag"].endswith('-2"')
    assert s3.get_object(Bucket=repo, Key="main/mp")["Body"].read() == b"a" * (5 * MiB) + b"tail"

    other = s3.create_multipart_upload(Bucket=repo, Key="main/aborted")
    s3.abort_multipart_upload(Bucket=repo, Key="main/aborted", UploadId=other["UploadId"])
    with pytest.raises(botocore.exceptions.ClientError):
        s3.upload_part(Bucket=repo, Key="main/aborted", UploadId=other["UploadId"], PartNumber=1, Body=b"x")


def test_presigned_urls(s3, repo):
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": repo, "Key": "main/presigned"},
                                        ExpiresIn=300)
    assert requests.put(put_url, data=b"presigned body").status_code == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": repo, "Key": "main/presigned"},
                                        ExpiresIn=300)
    response = requests.get(get_url)
    assert response.status_code == 200
    assert response.content == b"presigned body"
    response = requests.get(get_url.replace("main/presigned", "main/presigneX"))
    assert response.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in response.text


def test_wrong_credentials(server, repo):
    def client(akid, secret):
        return boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=akid,
                            aws_secret_access_key=secret, region_name="us-east-1",
                            config=botocore.config.Config(s3={"addressing_style": "path"}))

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client(ACCESS_KEY_ID, "wrong").list_objects_v2(Bucket=repo, Prefix="main/")
    assert error_code(excinfo) == "SignatureDoesNotMatch"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client("AKIAUNKNOWN", SECRET_ACCESS_KEY).list_buckets()
    assert error_code(excinfo) == "AccessDenied"


def test_default_checksums_of_new_boto3(server, repo):
    """Newer boto3 defaults (CRC32 checksums, aws-chunked trailers) also work."""
    s3 = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY_ID,
                      aws_secret_access_key=SECRET_ACCESS_KEY, region_name="us-east-1",
                      config=botocore.config.Config(s3={"addressing_style": "path"}))
    s3.put_object(Bucket=repo, Key="main/crc", Body=b"checksummed")
    assert s3.get_object(Bucket=repo, Key="main/crc")["Body"].read() == b"checksummed"
    s3.delete_objects(Bucket=repo, Delete={"Objects": [{"Key": "main/crc"}]})
    assert s3.list_objects_v2(Bucket=repo, Prefix="main/")["KeyCount"] == 0
