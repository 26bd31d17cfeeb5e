"""Downloads (urllib: no wget/curl needed) and SHA-256 checks."""
import contextlib
import hashlib
import os
import time
import urllib.error
import urllib.request

from .textio import DataPrepError, log


def download(url, out_path, timeout=60, chunk=1 << 20):
    """Fetch ``url`` to ``out_path`` through a temporary name; progress on stderr."""
    tmp = f"{out_path}.part{os.getpid()}"
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    log(f"downloading {url}")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "pn_fairseq-dataprep"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, start, last = 0, time.monotonic(), 0.0
            for block in iter(lambda: response.read(chunk), b""):
                out.write(block)
                done += len(block)
                now = time.monotonic()
                if now - last >= 10:
                    last = now
                    of = f" of {total / 1e6:,.0f}" if total else ""
                    log(f"  {os.path.basename(out_path)}: {done / 1e6:,.0f}{of} MB")
        if total and done != total:
            raise DataPrepError(f"download of {url} stopped after {done:,} of {total:,} bytes")
    except (urllib.error.URLError, OSError, ValueError) as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise DataPrepError(f"download of {url} failed: {err}") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.replace(tmp, out_path)
    log(f"saved {out_path} ({done / 1e6:,.1f} MB)")


def sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sums(sums_path):
    """``sha256sum`` format: '<hex>  <name>' per line."""
    sums = {}
    with open(sums_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                digest, name = line.split(None, 1)
                sums[name.strip().lstrip("*")] = digest.lower()
    return sums


def verify(sums_path, directory, names):
    """Check each named file of ``directory`` against ``sums_path``; raise naming the first bad one."""
    sums = read_sums(sums_path)
    for name in names:
        if name not in sums:
            raise DataPrepError(f"{sums_path} has no checksum for {name}")
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            raise DataPrepError(f"missing file {path}")
        actual = sha256(path)
        if actual != sums[name]:
            raise DataPrepError(f"checksum mismatch for {path}: expected sha256 {sums[name]}, got {actual} "
                                "(corrupted or truncated file)")
    log(f"sha256 ok: {', '.join(names)}")
