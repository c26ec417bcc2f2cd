#!/usr/bin/env python3
"""C++ tests of Throng's patches to the mediasoup worker (third_party/mediasoup-patches),
against the very worker library cargo built (target/mediasoup-worker/<build type>):

1. upstream mediasoup's own unit tests of the code the patches touch (the crate's
   test/src: the BWE suite, which holds SendPacketHistory's, and the RTP/RTCP
   helpers around it), compiled with the worker's own flags (from meson's
   compile_commands.json) against Debian's Catch2 2.13 (the tests use only
   SCENARIO / SECTION / REQUIRE / FAIL, the same in Catch2 2 and 3) and linked
   with libmediasoup-worker.a;
2. differential tests (third_party/mediasoup-patches/tests/*_diff.cpp): the
   patched code and upstream's original, taken from the crate cargo downloaded,
   driven with the same long random sequences of calls, must answer the same.

Run by media-node's test `worker_patches` (cargo nextest) and by hand:
    scripts/test-worker-patches.py [BUILD_DIR]
Exits non-zero, naming what failed, when anything does.
"""
import concurrent.futures
import glob
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREPARED = os.path.join(ROOT, ".prepared", "mediasoup-sys")
PATCHES = os.path.join(ROOT, "third_party", "mediasoup-patches")
# Cargo.toml pins it exactly; scripts/prepare-mediasoup.sh says the same.
CRATE = "mediasoup-sys-0.24.0"

# Upstream's unit tests of what the patches touch, relative to the crate.
UPSTREAM_TESTS = sorted(
    glob.glob(os.path.join(PREPARED, "test/src/RTC/BWE/*.cpp"))
    + glob.glob(os.path.join(PREPARED, "test/src/RTC/BWE/helpers/*.cpp"))
    + [os.path.join(PREPARED, f) for f in (
        "test/src/RTC/TestRateCalculator.cpp",
        "test/src/RTC/TestTransportTuple.cpp",
        "test/src/RTC/RTP/TestRtpStreamSend.cpp",
        "test/src/RTC/RTP/TestRetransmissionBuffer.cpp",
    )]
)
# What those need around them: upstream's test helpers and mocks.
TEST_SUPPORT = [os.path.join(PREPARED, f) for f in (
    "test/src/testHelpers.cpp",
    "test/src/RTC/RTP/rtpCommon.cpp",
    "mocks/src/MockShared.cpp",
    "mocks/src/handles/MockBackoffTimerHandle.cpp",
    "mocks/src/handles/MockTimerHandle.cpp",
    "mocks/src/Channel/MockChannelMessageRegistrator.cpp",
)]
# Differential tests: file -> upstream files it needs, and the macro naming the header.
DIFF_TESTS = {
    "send_packet_history_diff.cpp": {
        "class": "SendPacketHistory",
        "sources": ["src/RTC/BWE/SendPacketHistory.cpp"],
        "header": "include/RTC/BWE/SendPacketHistory.hpp",
        "macro": "UPSTREAM_SEND_PACKET_HISTORY_HPP",
    },
    "robust_throughput_estimator_diff.cpp": {
        "class": "RobustThroughputEstimator",
        "sources": ["src/RTC/BWE/RobustThroughputEstimator.cpp"],
        "header": "include/RTC/BWE/RobustThroughputEstimator.hpp",
        "macro": "UPSTREAM_ROBUST_THROUGHPUT_ESTIMATOR_HPP",
    },
}

# Catch2 3's headers the tests include, on Debian's single-header Catch2 2.
SHIM = {
    "catch2/catch_test_macros.hpp": "#include <catch2/catch.hpp>\n",
    "catch2/catch_session.hpp": "#define CATCH_CONFIG_RUNNER\n#include <catch2/catch.hpp>\n",
}


def fail(msg):
    print(f"test-worker-patches: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def log(msg):
    print(f"test-worker-patches: {msg}", file=sys.stderr, flush=True)


def build_dir():
    if len(sys.argv) > 1:
        return os.path.abspath(sys.argv[1])
    base = os.path.join(ROOT, "target", "mediasoup-worker")
    # The newest library: the build the tests just ran with.
    libs = [d for d in ("Debug", "Release") if os.path.exists(os.path.join(base, d, "libmediasoup-worker.a"))]
    if not libs:
        fail(f"no libmediasoup-worker.a under {base}: build the worker first (cargo build)")
    return os.path.join(base, max(libs, key=lambda d: os.path.getmtime(os.path.join(base, d, "libmediasoup-worker.a"))))


def test_flags(bdir):
    """The worker's compile flags for its own test binary, from meson."""
    commands = json.load(open(os.path.join(bdir, "compile_commands.json")))
    # The test binary's entry when meson defined it, else the library's own.
    wanted = [("test/src/RTC/BWE/TestSendPacketHistory.cpp", "mediasoup-worker-test.p"),
              ("src/RTC/BWE/SendPacketHistory.cpp", "libmediasoup-worker.a.p")]
    for c in sorted(commands, key=lambda c: [i for i, w in enumerate(wanted)
                                             if c["file"].endswith(w[0]) and w[1] in c["command"]] or [9]):
        if any(c["file"].endswith(f) and t in c["command"] for f, t in wanted):
            args = shlex.split(c["command"])
            flags, skip = [], False
            for a in args[1:]:
                if skip:
                    skip = False
                    continue
                if a in ("-MQ", "-MF", "-o"):
                    skip = True
                    continue
                if a in ("-MD", "-c") or a.endswith(".cpp") or a.startswith("-fdiagnostics-color"):
                    continue
                # Relative include paths are relative to meson's build directory.
                if a.startswith("-I") and not os.path.isabs(a[2:]):
                    a = "-I" + os.path.normpath(os.path.join(c["directory"], a[2:]))
                flags.append(a)
            return args[0], flags
    fail(f"{bdir}/compile_commands.json has no test entry to take the flags from")


def upstream_crate(dest):
    cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    found = glob.glob(os.path.join(cargo_home, "registry", "cache", "*", CRATE + ".crate"))
    if not found:
        fail(f"{CRATE}.crate not in cargo's registry cache (scripts/prepare-mediasoup.sh fetches it)")
    with tarfile.open(found[0]) as t:
        t.extractall(dest, filter="data")
    return os.path.join(dest, CRATE)


def compile_all(cxx, jobs):
    def one(job):
        args, what = job
        r = subprocess.run([cxx] + args, capture_output=True, text=True)
        if r.returncode != 0:
            return f"{what}:\n{r.stderr[-4000:]}"
        return None
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        for err in ex.map(one, jobs):
            if err:
                fail(f"compiling {err}")


def main():
    bdir = build_dir()
    lib = os.path.join(bdir, "libmediasoup-worker.a")
    cxx, flags = test_flags(bdir)
    patches = sorted(os.path.basename(p) for p in glob.glob(os.path.join(PATCHES, "*.patch")))
    log(f"worker library {lib}; patches applied: {', '.join(patches) or 'none'}")
    # Objects are cached by what went into them (the source, the flags, and the
    # library's time standing for the patched headers), so a second run against
    # the same library compiles nothing; the others are removed.
    cache = os.path.join(ROOT, "target", "worker-patch-tests")
    os.makedirs(cache, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shim = os.path.join(cache, "shim")
        # Every other Catch2 3 header the tests include is in Catch2 2's one header.
        for src in UPSTREAM_TESTS + [os.path.join(PREPARED, "test/include/catch2Macros.hpp")]:
            for line in open(src):
                if line.startswith("#include <catch2/"):
                    SHIM.setdefault(line.split("<")[1].split(">")[0], "#include <catch2/catch.hpp>\n")
        for name, text in SHIM.items():
            os.makedirs(os.path.dirname(os.path.join(shim, name)), exist_ok=True)
            open(os.path.join(shim, name), "w").write(text)
        # MS_TEST: what meson's ms_build_tests adds (a few members the tests read
        # are public then; nothing the library was built with changes layout).
        base = ["-I" + shim] + flags + ["-DMS_TEST", "-I" + os.path.join(PREPARED, "test/include"),
                                         "-I" + os.path.join(PREPARED, "mocks/include")]

        def obj(src):
            h = hashlib.sha256(open(src, "rb").read())
            h.update((" ".join(base) + str(os.path.getmtime(lib))).encode())
            key = h.hexdigest()[:20]
            return os.path.join(cache, f"{os.path.basename(src)}.{key}.o")

        # 1. upstream's unit tests.
        main_src = os.path.join(PREPARED, "test/src/tests.cpp")
        jobs, objs = [], []
        # The one test-only definition the mocks need from the library, which
        # was built without MS_TEST (ChannelSocket.cpp's, verbatim).
        extra = os.path.join(tmp, "ChannelSocketForTests.cpp")
        open(extra, "w").write(
            '#include "Channel/ChannelSocket.hpp"\n'
            "namespace Channel\n{\n\tChannelSocket::ChannelSocket()\n\t{\n\t}\n} // namespace Channel\n"
        )
        for src in UPSTREAM_TESTS + TEST_SUPPORT + [main_src, extra]:
            o = obj(src)
            objs.append(o)
            if not os.path.exists(o):
                jobs.append((base + ["-c", src, "-o", o], os.path.relpath(src, PREPARED)))
        log(f"upstream unit tests: {len(UPSTREAM_TESTS)} files, {len(jobs)} to compile")
        for stale in glob.glob(os.path.join(cache, "*.o")):
            if stale not in objs:
                os.remove(stale)
        compile_all(cxx, jobs)
        exe = os.path.join(tmp, "mediasoup-worker-test")
        r = subprocess.run([cxx, "-o", exe] + objs + [lib, "-pthread", "-ldl"], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"linking upstream's unit tests:\n{r.stderr[-4000:]}")
        r = subprocess.run([exe], capture_output=True, text=True)
        summary = [l for l in r.stdout.splitlines() if "test cases" in l or "assertions" in l]
        if r.returncode != 0:
            fail(f"upstream's unit tests on the patched worker:\n{r.stdout[-6000:]}{r.stderr[-2000:]}")
        log("upstream unit tests: " + (summary[-1] if summary else r.stdout.strip()[-200:]))

        # 2. differential tests against upstream's original code.
        crate = upstream_crate(os.path.join(tmp, "crate"))
        present = sorted(os.path.basename(f) for f in glob.glob(os.path.join(PATCHES, "tests", "*_diff.cpp")))
        if present != sorted(DIFF_TESTS):
            fail(f"differential tests on disk {present} are not those DIFF_TESTS describes {sorted(DIFF_TESTS)}")
        for test, spec in DIFF_TESTS.items():
            src = os.path.join(PATCHES, "tests", test)
            header = os.path.join(crate, spec["header"])
            rename = f"-D{spec['class']}=Upstream{spec['class']}"
            jobs, objs = [], []
            for up in spec["sources"]:
                o = os.path.join(tmp, "upstream-" + os.path.basename(up) + ".o")
                # The original, with its own header first on the include path.
                jobs.append(([rename, "-I" + os.path.join(crate, "include")] + base + ["-c", os.path.join(crate, up), "-o", o], up))
                objs.append(o)
            o = os.path.join(tmp, test + ".o")
            jobs.append((base + [f'-D{spec["macro"]}="{header}"', "-c", src, "-o", o], test))
            objs.append(o)
            compile_all(cxx, jobs)
            exe = os.path.join(tmp, test[:-4])
            r = subprocess.run([cxx, "-o", exe] + objs + [lib, "-pthread", "-ldl"], capture_output=True, text=True)
            if r.returncode != 0:
                fail(f"linking {test}:\n{r.stderr[-4000:]}")
            r = subprocess.run([exe], capture_output=True, text=True)
            if r.returncode != 0:
                fail(f"{test}: {r.stderr.strip()}")
            log(r.stdout.strip())
    log("all passed")


if __name__ == "__main__":
    main()
