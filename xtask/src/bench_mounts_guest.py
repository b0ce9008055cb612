# The guest side of `cargo xtask bench mounts` (xtask/src/bench_mounts.rs), run through
# `limactl shell` as `python3 bench.py JOB ARGS...`. Each job times itself with
# perf_counter_ns, so ssh and limactl do not count, and prints one line per figure:
#     RESULT <name> <nanoseconds> [<bytes>]
# `probe` prints one line describing the filesystem a directory is on:
#     PROBE mountpoint=... fstype=... options=... filesystems=... modules=... sshfs=... kernel=...
# Caches: every timed part starts after `sync` and dropping the guest's page cache, dentries
# and inodes, so reads and lookups go to the disk or the host and not to guest memory.
import os
import shutil
import subprocess
import sys
import time

CHUNK = 1 << 20
PATTERN_MIB = 16


def drop_caches():
    os.sync()
    subprocess.run(
        ["sudo", "-n", "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], check=True
    )


def result(name, ns, nbytes=None):
    extra = [] if nbytes is None else [nbytes]
    print("RESULT", name, ns, *extra, flush=True)


def pattern():
    # Random bytes repeating every 16 MiB: nothing on the way compresses or skips them
    # (zeros could be), and making them is not timed.
    return memoryview(os.urandom(PATTERN_MIB * CHUNK))


def write_all(fd, data):
    data = memoryview(data)
    while data:
        n = os.write(fd, data)
        data = data[n:]


def fill(path, mib, pat):
    """Writes `mib` MiB in 1 MiB writes and fsyncs, like `dd bs=1M conv=fsync`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for i in range(mib):
            off = (i % PATTERN_MIB) * CHUNK
            write_all(fd, pat[off : off + CHUNK])
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def job_mkfile(path, mib):
    """The guest disk's file for the read job (the mounts read one the host made)."""
    fill(path, int(mib), pattern())


def job_write(d, mib):
    mib = int(mib)
    path = os.path.join(d, "bench-write.bin")
    pat = pattern()
    remove(path)
    drop_caches()
    t = time.perf_counter_ns()
    fill(path, mib, pat)
    ns = time.perf_counter_ns() - t
    size = os.stat(path).st_size
    remove(path)
    if size != mib * CHUNK:
        sys.exit("wrote %d MiB but the file has %d bytes" % (mib, size))
    result("write", ns, size)


def job_read(path):
    size = os.stat(path).st_size
    buf = bytearray(CHUNK)
    drop_caches()
    t = time.perf_counter_ns()
    total = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            total += n
    ns = time.perf_counter_ns() - t
    if total != size:
        sys.exit("read %d bytes of %d" % (total, size))
    result("read", ns, total)


def job_files(d, n):
    """Creates `n` files of 1 KiB, stats them, deletes them; each phase timed on its own."""
    root = os.path.join(d, "bench-files")
    remove(root)
    os.mkdir(root)
    names = [os.path.join(root, "f%05d" % i) for i in range(int(n))]
    data = os.urandom(1024)

    drop_caches()
    t = time.perf_counter_ns()
    for p in names:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        write_all(fd, data)
        os.close(fd)
    os.sync()
    result("create", time.perf_counter_ns() - t)

    drop_caches()
    t = time.perf_counter_ns()
    for p in names:
        os.stat(p)
    result("stat", time.perf_counter_ns() - t)

    drop_caches()
    t = time.perf_counter_ns()
    for p in names:
        os.unlink(p)
    os.rmdir(root)
    os.sync()
    result("delete", time.perf_counter_ns() - t)


def job_untar(tarball, d):
    """`tar -xf` of a tarball on the guest disk into `d`, then sync."""
    root = os.path.join(d, "bench-untar")
    remove(root)
    os.mkdir(root)
    drop_caches()
    # The tarball back in the page cache: the job times the target, not the source.
    with open(tarball, "rb") as f:
        while f.read(CHUNK):
            pass
    t = time.perf_counter_ns()
    r = subprocess.run(
        ["tar", "-xf", tarball, "-C", root],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    os.sync()
    ns = time.perf_counter_ns() - t
    if r.returncode != 0:
        sys.stderr.write(r.stdout.decode(errors="replace"))
        sys.exit("tar -xf exited with %d" % r.returncode)
    remove(root)
    result("untar", ns)


def job_probe(d):
    d = os.path.realpath(d)
    best = None
    with open("/proc/self/mounts") as f:
        for line in f:
            src, mnt, fstype, opts = line.split()[:4]
            mnt = mnt.replace("\\040", " ")
            if d == mnt or d.startswith(mnt.rstrip("/") + "/"):
                # The last of equally long matches is the mount on top.
                if best is None or len(mnt) >= len(best[1]):
                    best = (src, mnt, fstype, opts)
    with open("/proc/filesystems") as f:
        known = {line.split()[-1] for line in f if line.strip()}
    release = os.uname().release
    modules = set()
    for _, _, files in os.walk("/lib/modules/%s/kernel/fs" % release):
        modules.update(name.split(".ko")[0] for name in files)
    wanted = ["9p", "virtiofs", "fuse"]
    print(
        "PROBE",
        "mountpoint=" + best[1],
        "fstype=" + best[2],
        "options=" + best[3],
        "filesystems=" + ",".join(x for x in wanted if x in known),
        "modules=" + ",".join(x for x in wanted if x in modules),
        "sshfs=" + ("yes" if shutil.which("sshfs") else "no"),
        "kernel=" + release,
    )


JOBS = {
    "probe": job_probe,
    "mkfile": job_mkfile,
    "write": job_write,
    "read": job_read,
    "files": job_files,
    "untar": job_untar,
}

if __name__ == "__main__":
    JOBS[sys.argv[1]](*sys.argv[2:])
