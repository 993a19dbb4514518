#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Host-side test of results.py: real logs, and doctored copies of them.

harness/tests/results/ holds the logs of one real, passing test run (the
test boot, the two round-trip boots, QEMU's exit statuses, the style and
matrix results). Each case below doctors a copy of them the way a broken run
would look (a truncated log, a killed QEMU, a missing kselftest, a skipped
headline test, ...) and states what results.py must say: pass or fail, and a
line of its output. The doctored logs are kept under --keep (the harness
keeps them in its output directory) for a reader to look at.

Prints TAP, one test per case; exits 1 if any case fails.
"""

import argparse
import contextlib
import io
import os
import re
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # nothing written into the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'results')

# What the harness expected when the fixture logs were taken.
KSELFTESTS = 'dm_hibsnap_test,freeze_test,load_test,snapshot_test,roundtrip'
KUNIT = 'dm_hibsnap,hibsnap_freeze,hibsnap_snapshot,rust_kernel_device_mapper'
OWN_DOCTESTS = ','.join(rf'^rust_doctests_kernel\.rust_doctest_kernel_{f}_rs_[0-9]+$' for f in (
    'anon_inode', 'block_bio', 'capability', 'device_mapper', 'power', 'signal', 'tasklist'))
HEADLINE = [
    r'snapshot_test: slow\.failure_at_each_step_rolls_back',
    r'snapshot_test: slow\.more_than_half_of_ram',
    r'dm_hibsnap_test: global\.boot_device_back_in_passthrough',
    r'roundtrip: .*',
]


class Logs:
    """A writable copy of the fixture logs."""

    def __init__(self, path):
        self.path = path

    def file(self, name):
        return os.path.join(self.path, name)

    def lines(self, name):
        with open(self.file(name)) as f:
            return f.read().split('\n')

    def write(self, name, lines):
        with open(self.file(name), 'w') as f:
            f.write('\n'.join(lines))

    def edit(self, name, fn):
        self.write(name, fn(self.lines(name)))

    def cut_after(self, name, pattern):
        """Keep the lines up to and including the first that matches pattern."""
        def cut(lines):
            at = next(i for i, l in enumerate(lines) if re.search(pattern, l))
            return lines[:at + 1]
        self.edit(name, cut)

    def drop(self, name, pattern):
        self.edit(name, lambda lines: [l for l in lines if not re.search(pattern, l)])

    def sub(self, name, pattern, repl, count=1):
        def sub(lines):
            text, n = re.subn(pattern, repl, '\n'.join(lines), count=count, flags=re.M)
            assert n, f'{pattern!r} not in {name}'
            return text.split('\n')
        self.edit(name, sub)

    def drop_section(self, name, first, last):
        """Drop the lines from the first match of `first` to the next match of `last`."""
        def drop(lines):
            a = next(i for i, l in enumerate(lines) if re.search(first, l))
            b = next(i for i in range(a, len(lines)) if re.search(last, lines[i]))
            return lines[:a] + lines[b + 1:]
        self.edit(name, drop)


def good(logs):
    pass


def truncated_console(logs):
    # The kernel log ends in the middle of KUnit (the kernel died there).
    logs.cut_after('test-console.log', r'# Subtest: hibsnap_freeze')


def qemu_killed_mid_kselftest(logs):
    # QEMU killed by its time limit in the middle of freeze_test.
    logs.cut_after('test-tests.log', r'^ok 3 ')
    logs.write('test-qemu.rc', ['rc=124 limit=1800'])


def truncated_tests_log(logs):
    # The test log stops in the middle of freeze_test; QEMU says nothing wrong.
    logs.cut_after('test-tests.log', r'^ok 5 freeze\.')


def missing_kselftest(logs):
    # load_test was not built (or not copied): it never began.
    logs.drop_section('test-tests.log', r'^HIBSNAP-KSFT-BEGIN load_test', r'^HIBSNAP-KSFT-END load_test')


def kselftest_without_end(logs):
    # freeze_test crashed /init's loop output: the next kselftest began anyway.
    logs.drop('test-tests.log', r'^HIBSNAP-KSFT-END freeze_test')


def kselftest_timed_out(logs):
    # /init's time limit killed a kselftest after its last result.
    logs.sub('test-tests.log', r'^HIBSNAP-KSFT-END snapshot_test rc=0', 'HIBSNAP-KSFT-END snapshot_test rc=124')


def headline_skipped(logs):
    logs.sub('test-tests.log', r'^(ok \d+ slow\.more_than_half_of_ram)$', r'\1 # SKIP needs a VM of about 1 GiB')


def other_test_skipped(logs):
    logs.sub('test-tests.log', r'^(ok \d+ freeze\.einval_on_unknown_flags)$', r'\1 # SKIP doctored')


def benchmark_printed(logs):
    # A kselftest's benchmark line is collected and printed, not counted.
    logs.sub('test-tests.log', r'^(ok 1 freeze\.\S+)$', r'# HIBSNAP-BENCH freeze n=1000 (doctored)\n\1')


def result_missing(logs):
    # One result line gone, the plan unchanged.
    logs.drop('test-tests.log', r'^ok \d+ freeze\.all_threads_stop$')


def test_boot_without_end(logs):
    # The test boot did not reach its end; the round-trip boots did.
    logs.drop('test-tests.log', r'^HIBSNAP-END$')


def roundtrip_save_killed(logs):
    # rt-save's QEMU died before the image was written; the loader found none.
    logs.cut_after('rt-save-tests.log', r'^ok 1 ')
    logs.write('rt-save-qemu.rc', ['rc=124 limit=300'])
    logs.write('rt-load-tests.log', ['HIBSNAP-BEGIN mode=roundtrip-load kernel=7.3.4+',
                                     'HIBSNAP-ENV cgroup2',
                                     'HIBSNAP-LOAD: no image on /dev/vda',
                                     'HIBSNAP-LOAD: failed, rc=1', 'HIBSNAP-END', ''])


def roundtrip_not_resumed(logs):
    # The restored system never printed the rest of the round trip.
    logs.cut_after('rt-load-tests.log', r'^HIBSNAP-LOAD: \d+ bytes loaded, restoring')


def kunit_suite_failed(logs):
    # A failed KUnit suite line, though each of its tests passed.
    logs.sub('test-console.log', r'^(\[[ \d.]+\] )?ok (\d+) hibsnap_freeze$', r'\1not ok \2 hibsnap_freeze')


def kunit_suite_missing(logs):
    logs.edit('test-console.log', lambda lines: [l.replace('hibsnap_snapshot', 'renamed_suite') for l in lines])


def kernel_warning(logs):
    logs.edit('test-console.log', lambda lines: lines[:-2] + [
        '[  100.000000] WARNING: CPU: 0 PID: 1 at kernel/power/snapshot.c:1 doctored'] + lines[-2:])


def environment_missing(logs):
    logs.sub('test-tests.log', r'^HIBSNAP-ENV .*$', 'HIBSNAP-ENV-MISSING zswap')


def matrix_build_failed(logs):
    logs.sub('matrix.tap', r'^ok 2 ', 'not ok 2 ')


def style_results_missing(logs):
    os.unlink(logs.file('style.tap'))


CASES = [
    # name, doctor, must pass, a line results.py must print
    ('real logs of a passing run', good, True, r'^ +60  hibsnap.s behaviour.*: 60 passed, 0 failed, 0 skipped$'),
    ('kernel log cut in KUnit', truncated_console, False, r'kunit: .*(plan|did not run)'),
    ('QEMU killed in a kselftest', qemu_killed_mid_kselftest, False, r'boot test: QEMU timed out after 1800 s'),
    ('test log cut in a kselftest', truncated_tests_log, False, r'freeze_test: began in boot test and did not end'),
    ('missing kselftest binary', missing_kselftest, False, r'load_test: never ran'),
    ('kselftest without its end marker', kselftest_without_end, False,
     r'freeze_test: began in boot test and did not end \(load_test began after it\)'),
    ('kselftest killed by its time limit', kselftest_timed_out, False, r'snapshot_test: killed by its time limit'),
    ('headline test skipped', headline_skipped, False,
     r'more_than_half_of_ram: a headline test must run, but it was skipped'),
    ('other test skipped: listed, not failed', other_test_skipped, True, r'^  freeze_test: freeze\.einval_on_unknown_flags \(doctored\)$'),
    ('benchmark line printed, not counted', benchmark_printed, True, r'^  freeze n=1000 \(doctored\)$'),
    ('result missing under an unchanged plan', result_missing, False, r'freeze_test: .*(results missing|plan 1\.\.)'),
    ('test boot without its end marker', test_boot_without_end, False, r'boot test: /init did not reach its end marker'),
    ('round trip: first boot killed', roundtrip_save_killed, False, r'boot rt-save: QEMU timed out'),
    ('round trip: restored system silent', roundtrip_not_resumed, False, r'roundtrip: began in boot rt-save and did not end'),
    ('failed KUnit suite line, children passed', kunit_suite_failed, False, r'kunit: hibsnap_freeze reported failure'),
    ('expected KUnit suite missing', kunit_suite_missing, False, r'kunit: suite hibsnap_snapshot did not run'),
    ('WARNING in the kernel log', kernel_warning, False, r'kernel log of test: WARNING:'),
    ('test environment incomplete', environment_missing, False, r'test environment lacks zswap'),
    ('matrix build failed', matrix_build_failed, False, r'FAIL  matrix: build'),
    ('style results missing', style_results_missing, False, r'style: no results'),
]


def run_case(doctor, workdir):
    shutil.copytree(FIXTURES, workdir)
    doctor(Logs(workdir))
    argv = ['--out', workdir, '--kselftests', KSELFTESTS, '--kunit-suites', KUNIT,
            '--own-doctests', OWN_DOCTESTS,
            '--extra', f'style={workdir}/style.tap', '--extra', f'matrix={workdir}/matrix.tap']
    for h in HEADLINE:
        argv += ['--headline', h]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = results.main(argv)
    return rc, out.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--keep', help='keep each case\'s doctored logs and output in this directory')
    args = ap.parse_args()
    keep = args.keep or tempfile.mkdtemp(prefix='hibsnap-results-test.')
    shutil.rmtree(keep, ignore_errors=True)
    os.makedirs(keep)
    print('TAP version 13')
    print(f'1..{len(CASES)}')
    failed = 0
    for n, (name, doctor, must_pass, expect) in enumerate(CASES, 1):
        workdir = os.path.join(keep, doctor.__name__)
        rc, out = run_case(doctor, workdir)
        with open(os.path.join(workdir, 'results.out'), 'w') as f:
            f.write(out)
        ok_status = (rc == 0) == must_pass
        ok_line = re.search(expect, out, re.M) is not None
        ok = ok_status and ok_line
        failed += not ok
        print(f'{"ok" if ok else "not ok"} {n} parser: {name} -> {"passes" if must_pass else "fails"}')
        if not ok_status:
            print(f'# results.py exited {rc}, expected {"0" if must_pass else "1"}')
        if not ok_line:
            print(f'# no line matches {expect!r}; output in {workdir}/results.out')
    if not args.keep:
        shutil.rmtree(keep, ignore_errors=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
