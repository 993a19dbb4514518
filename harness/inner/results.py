#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Read the logs of hibsnap's test boots and count the tests.

Each boot NAME left three files in the output directory:
  NAME-console.log  ttyS0, the kernel log (KUnit's KTAP output, the kernel's
                    own health reports);
  NAME-tests.log    ttyS1, what /init ran: each kselftest's TAP output
                    between HIBSNAP-KSFT-BEGIN/END markers, the boot between
                    HIBSNAP-BEGIN and HIBSNAP-END;
  NAME-qemu.rc      QEMU's exit status and the time limit it ran under.

A run passes only if every boot ended on its own: its end marker was printed,
QEMU exited 0 within its limit, and nothing the harness expected is missing.
The harness says in advance what must run (--kselftests, --kunit-suites);
each one missing from the output is a failure by name, as is a kselftest that
began and did not end, a plan that does not match what ran, a failed KUnit
suite (even when its children passed), a skipped headline test (--headline),
and any BUG, WARNING, Oops, panic, lockdep report, RCU stall or hung task in
any boot's kernel log.

The boots of a round trip: rt-save begins the kselftest "roundtrip" and
powers off inside it; rt-load feeds the image to the kernel's loader, and the
restored system (rt-save's, running on) prints the rest of the kselftest and
the end marker. The kselftest is read across the two boots, but each boot is
checked on its own. The round trip through the hibsnap tool
("tool_roundtrip") has four boots, tool-save, tool-load1-save,
tool-load2-save and tool-load3: any boot whose name ends in -save may power
off inside its kselftest, and in any boot whose name has -load (-loadN) the
kselftest goes on after the line that hands the image to the loader.

Prints each test, a breakdown by kind, the skipped tests by name, and a last
line "N passed, N failed, N skipped". Exits 1 if anything failed.
"""

import argparse
import os
import re
import sys

TIMESTAMP = re.compile(r'^\[\s*\d+\.\d+\]\s?')
RESULT = re.compile(r'^(?P<indent>\s*)(?P<ok>ok|not ok) (?P<num>\d+)(?: -)? ?(?P<name>[^#]*?)\s*(?:#\s*(?P<directive>.*))?$')
PLAN = re.compile(r'^(?P<indent>\s*)1\.\.(?P<n>\d+)')
SUBTEST = re.compile(r'^(?P<indent>\s*)# Subtest: (?P<name>\S+)')
BAD_KERNEL_LINES = [
    re.compile(p) for p in (
        r'\bBUG:', r'\bWARNING:', r'\bOops\b', r'Kernel panic',
        r'possible circular locking', r'possible recursive locking',
        r'inconsistent lock state', r'suspicious RCU usage',
        r'rcu.*detected stall', r'self-detected stall',
        r'blocked for more than \d+ seconds', r'general protection fault',
        r'kernel BUG at', r'Call Trace:',
    )
]
# A boot that hands an image to the loader: rt-load, tool-load1-save, ...
LOAD_BOOT = re.compile(r'-load\d*(-|$)')
# The restored system of the round trip takes over from the loader here.
RESTORING = re.compile(r'^(HIBSNAP-LOAD: \d+ bytes loaded|hibsnap: \d+ MiB verified and loaded in [\d.]+ s( \([^)]*\))?), restoring')

# Kinds of tests, in the order of the breakdown.
KINDS = {
    'hibsnap': "hibsnap's behaviour (kselftests, hibsnap's KUnit suites and doctests)",
    'kernel': 'upstream kernel crate doctests and KUnit suites',
    'tool': "the hibsnap tool's own tests (cargo test)",
    'style': 'style (rustfmt, checkpatch --strict, clippy)',
    'parser': 'harness self-test (this parser on doctored logs)',
    'matrix': 'build matrix',
    'series': 'the patch series (per patch: builds in order, checkpatch, kernel-doc; UAPI header, rst, man pages)',
    'newest': "hibsnap's Rust with the newest Rust of trixie-backports (kernel CLIPPY=1, the tool, clippy)",
    'setup': 'setup: harness/packages.pin against the archive of today, and its resolver',
    'bench': 'benchmark smoke run (harness/hibsnap bench, one size, one repetition)',
    'harness': 'run integrity (boots, markers, plans, kernel log)',
}

# A kselftest's benchmark figures: '# HIBSNAP-BENCH what'.
BENCH = 'HIBSNAP-BENCH '


def is_skip(directive):
    return (directive or '').strip().upper().startswith('SKIP')


class Tally:
    def __init__(self, headline=(), own_doctests=()):
        self.counts = {k: [0, 0, 0] for k in KINDS}
        self.skips = []
        self.problems = []
        self.headline = [re.compile(h) for h in headline]
        self.own_doctests = [re.compile(d) for d in own_doctests]

    @property
    def passed(self):
        return sum(c[0] for c in self.counts.values())

    @property
    def failed(self):
        return sum(c[1] for c in self.counts.values())

    @property
    def skipped(self):
        return sum(c[2] for c in self.counts.values())

    def result(self, kind, suite, name, ok, directive):
        label = f'{suite}: {name}'
        if is_skip(directive):
            reason = directive.strip()[4:].strip() or 'no reason given'
            if any(h.fullmatch(label) for h in self.headline):
                self.problem(f'{label}: a headline test must run, but it was skipped ({reason})')
                return
            self.counts[kind][2] += 1
            self.skips.append(f'{label} ({reason})')
            print(f'  SKIP  {label} ({reason})')
        elif ok:
            self.counts[kind][0] += 1
            print(f'  ok    {label}')
        else:
            self.counts[kind][1] += 1
            print(f'  FAIL  {label}')

    def problem(self, what):
        self.counts['harness'][1] += 1
        self.problems.append(what)
        print(f'  FAIL  {what}')


def ktap_leaves(lines, suite, tally, kind, summaries=None):
    """Count the leaf results of one KTAP/TAP stream; check every plan.

    A result line that closes a deeper block is that block's summary, not a
    test: it goes into `summaries` (name -> ok) when given, and a failed
    summary is a failure even if every child passed.
    """
    levels = {}         # indent -> [planned, seen, last number]
    names = {}          # indent -> name of the subtest open at that indent
    prev_indent = None
    if not any(PLAN.match(l) and not PLAN.match(l).group('indent') for l in lines):
        tally.problem(f'{suite}: no top-level plan (1..N): the output is cut or missing')
    for line in lines:
        m = SUBTEST.match(line)
        if m:
            names[len(m.group('indent'))] = m.group('name')
            continue
        m = PLAN.match(line)
        if m:
            levels[len(m.group('indent'))] = [int(m.group('n')), 0, 0]
            continue
        m = RESULT.match(line)
        if not m:
            continue
        indent = len(m.group('indent'))
        ok = m.group('ok') == 'ok'
        num = int(m.group('num'))
        name = m.group('name')
        level = levels.get(indent)
        if level is not None:
            level[1] += 1
            if num != level[2] + 1:
                tally.problem(f'{suite}: result {num} {name!r} follows result {level[2]}: '
                              f'{"results missing" if num > level[2] + 1 else "numbers repeat"}')
            level[2] = num
        closes_block = prev_indent is not None and prev_indent > indent
        if closes_block:
            for i in [i for i in levels if i > indent]:
                planned, seen, _ = levels.pop(i)
                if planned != seen:
                    tally.problem(f'{suite}: {name}: plan 1..{planned} but {seen} results')
            for i in [i for i in names if i > indent]:
                del names[i]
            if summaries is not None:
                summaries[name] = ok or is_skip(m.group('directive'))
            if not ok and not is_skip(m.group('directive')):
                tally.problem(f'{suite}: {name} reported failure (not ok)')
        else:
            if indent in names:
                name = f'{names[indent]}.{name}'
            k = kind(name) if callable(kind) else kind
            tally.result(k, suite, name, ok, m.group('directive'))
        prev_indent = indent
    for indent, (planned, seen, _) in levels.items():
        if planned != seen:
            tally.problem(f'{suite}: plan 1..{planned} at depth {indent} but {seen} results '
                          '(output cut: crash, hang or timeout?)')


class Boot:
    """One QEMU boot's logs."""

    def __init__(self, out, name):
        self.name = name
        self.console = self._read(os.path.join(out, f'{name}-console.log'))
        self.tests = self._read(os.path.join(out, f'{name}-tests.log'))
        self.rc, self.limit = None, None
        rcfile = self._read(os.path.join(out, f'{name}-qemu.rc'))
        for word in ' '.join(rcfile).split():
            key, _, value = word.partition('=')
            if key == 'rc' and value.lstrip('-').isdigit():
                self.rc = int(value)
            elif key == 'limit':
                self.limit = value

    @staticmethod
    def _read(path):
        try:
            with open(path, errors='replace') as f:
                return [l.rstrip('\r\n') for l in f]
        except FileNotFoundError:
            return None

    def check(self, tally, want_end):
        """What every boot must show on its own; False if it did not run to its end."""
        if self.console is None or self.tests is None:
            tally.problem(f'boot {self.name}: no logs (the boot did not run)')
            return False
        if self.rc is None:
            tally.problem(f'boot {self.name}: QEMU exit status missing (the harness was interrupted?)')
        elif self.rc in (124, 137):
            tally.problem(f'boot {self.name}: QEMU timed out after {self.limit} s and was killed')
        elif self.rc != 0:
            tally.problem(f'boot {self.name}: QEMU exited with status {self.rc}')
        if not any(l.startswith('HIBSNAP-BEGIN') for l in self.tests):
            tally.problem(f'boot {self.name}: /init never started (no HIBSNAP-BEGIN)')
            return False
        env = [l for l in self.tests if l.startswith('HIBSNAP-ENV')]
        if not env:
            tally.problem(f'boot {self.name}: /init did not report the test environment')
        for l in env:
            if l.startswith('HIBSNAP-ENV-MISSING'):
                tally.problem(f'boot {self.name}: the test environment lacks'
                              f'{l[len("HIBSNAP-ENV-MISSING"):]}')
        ended = any(l == 'HIBSNAP-END' for l in self.tests)
        if want_end and not ended:
            tally.problem(f'boot {self.name}: /init did not reach its end marker '
                          '(crash, hang or timeout; see its console log)')
        if not want_end and ended:
            tally.problem(f'boot {self.name}: ended, but it should have powered off inside its test')
        return ended or not want_end

    def health(self, tally):
        for raw in self.console or []:
            line = TIMESTAMP.sub('', raw)
            if any(p.search(line) for p in BAD_KERNEL_LINES):
                tally.problem(f'kernel log of {self.name}: {line.strip()}')


def kunit(boot, tally, suites):
    lines = [TIMESTAMP.sub('', l) for l in boot.console or []]
    try:
        start = next(i for i, l in enumerate(lines) if l.strip() == 'KTAP version 1')
    except StopIteration:
        tally.problem(f'kunit: no KTAP output in the kernel log of {boot.name}')
        return
    ktap = [l for l in lines[start:] if RESULT.match(l) or PLAN.match(l) or SUBTEST.match(l)]
    summaries = {}

    def kind(name):
        suite = name.split('.', 1)[0]
        if suite in suites or any(d.search(name) for d in tally.own_doctests):
            return 'hibsnap'
        return 'kernel'

    ktap_leaves(ktap, 'kunit', tally, kind, summaries)
    for s in suites:
        if s not in summaries:
            tally.problem(f'kunit: suite {s} did not run (or did not finish)')


def kselftests(stream, tally, expected):
    """Read the kselftests from (boot, line) pairs; every expected one must run and end."""
    ran = set()
    current, began_in, body = None, None, []

    def unfinished(why):
        tally.problem(f'{current}: began in boot {began_in} and did not end ({why})')

    for boot, line in stream:
        if line.startswith('HIBSNAP-KSFT-BEGIN '):
            name = line.split()[1]
            if current:
                unfinished(f'{name} began after it')
            if name in ran:
                tally.problem(f'{name}: ran twice')
            current, began_in, body = name, boot, []
            ran.add(name)
            continue
        if line.startswith('HIBSNAP-KSFT-END '):
            name = line.split()[1]
            if name != current:
                tally.problem(f'{name}: end marker without a beginning (in boot {boot})')
                continue
            rc = line.rsplit('rc=', 1)[-1]
            failed_before = tally.failed
            counted_before = tally.passed + tally.failed + tally.skipped
            ktap_leaves(body, name, tally, 'hibsnap')
            if tally.passed + tally.failed + tally.skipped == counted_before:
                tally.problem(f'{name}: ran no test')
            if rc == '124':
                tally.problem(f'{name}: killed by its time limit in /init')
            elif rc not in ('0', '4') and tally.failed == failed_before:
                tally.problem(f'{name}: exited with {rc} but reported no failure')
            current = None
            continue
        if line.startswith('HIBSNAP-LOAD: failed') or line.startswith('HIBSNAP-LOAD: no image'):
            tally.problem(f'boot {boot}: the loader failed: {line}')
        if current:
            body.append(line)
    if current:
        unfinished('its boot ended first')
    for name in expected:
        if name not in ran:
            tally.problem(f'{name}: never ran (expected by the harness)')
    for name in sorted(ran - set(expected)):
        print(f'  note  {name} ran but the harness did not expect it')


def extra(path, label, kind, tally):
    try:
        with open(path, errors='replace') as f:
            lines = [l.rstrip('\n') for l in f]
    except FileNotFoundError:
        tally.problem(f'{label}: no results ({path} missing)')
        return
    ktap_leaves(lines, label, tally, kind)


def test_run(args, tally):
    boots = {name: Boot(args.out, name) for name in args.boots}
    print('boots:')
    for name, boot in boots.items():
        boot.check(tally, want_end=not name.endswith('-save'))
    if 'test' in boots:
        print('KUnit (built in, run at boot):')
        kunit(boots['test'], tally, args.kunit_suites)
    print('kselftests (run by /init):')
    stream = []
    for name, boot in boots.items():
        lines = boot.tests or []
        if LOAD_BOOT.search(name):
            # Only what the restored system printed belongs to the kselftest.
            at = next((i for i, l in enumerate(lines) if RESTORING.match(l)), None)
            if at is None:
                tally.problem(f'boot {name}: the image was never handed to the loader')
                stream += [(name, l) for l in lines if l.startswith('HIBSNAP-LOAD')]
                continue
            lines = lines[at + 1:]
        stream += [(name, l) for l in lines]
    kselftests(stream, tally, args.kselftests)
    bench = [l.split(BENCH, 1)[1] for _, l in stream if BENCH in l]
    if bench:
        print('benchmarks (printed, not asserted; under TCG only ratios mean anything):')
        for line in bench:
            print(f'  {line}')
    for spec in args.extra:
        kind, _, path = spec.partition('=')
        print(f'{KINDS[kind]}:')
        extra(path, kind, kind, tally)
    print('kernel log health:')
    for boot in boots.values():
        boot.health(tally)


def demo_run(args, tally):
    """The demo's two boots: demo-save hibernates, demo-load resumes it."""
    save, load = Boot(args.out, 'demo-save'), Boot(args.out, 'demo-load')
    save.check(tally, want_end=False)
    load.check(tally, want_end=True)
    save.health(tally)
    load.health(tally)
    lines = load.tests or []
    at = next((i for i, l in enumerate(lines) if RESTORING.match(l)), None)
    if at is None:
        tally.problem('boot demo-load: the image was never handed to the loader')
        lines = []
    passed = 0
    for l in (save.tests or []) + lines[at + 1 if at is not None else 0:]:
        if l.startswith('DEMO: PASS'):
            passed += 1
        elif l.startswith('DEMO: FAIL'):
            tally.problem(l)
    if passed == 0:
        tally.problem('the demo passed no step')
    ok = tally.failed == 0
    print(f'demo {"succeeded" if ok else "FAILED"}; kernel logs: '
          f'{args.out}/demo-save-console.log, {args.out}/demo-load-console.log')
    return 0 if ok else 1


def summary(tally, elapsed, toolchain=None):
    print('summary:')
    if toolchain:
        try:
            with open(toolchain) as f:
                lines = [l.rstrip('\n') for l in f if l.strip()]
        except FileNotFoundError:
            lines = [f'({toolchain} missing)']
        print('  toolchains:')
        for l in lines:
            print(f'    {l}')
    for kind, (p, f, s) in tally.counts.items():
        if p + f + s:
            print(f'  {p + f + s:5d}  {KINDS[kind]}: {p} passed, {f} failed, {s} skipped')
    if tally.skips:
        print('skipped (by name):')
        for s in tally.skips:
            print(f'  {s}')
    if tally.problems:
        print(f'{len(tally.problems)} problem(s):')
        for p in tally.problems:
            print(f'  {p}')
    if elapsed is not None:
        print(f'took {elapsed} s')
    print(f'{tally.passed} passed, {tally.failed} failed, {tally.skipped} skipped')


def csv(value):
    return [v for v in value.split(',') if v]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True, help='directory with the boots\' logs')
    ap.add_argument('--demo', action='store_true', help='check the demo boot')
    ap.add_argument('--boots', type=csv, default=['test', 'rt-save', 'rt-load'])
    ap.add_argument('--kselftests', type=csv, default=[], help='kselftests that must run')
    ap.add_argument('--kunit-suites', type=csv, default=[],
                    help="hibsnap's KUnit suites, which must run")
    ap.add_argument('--own-doctests', type=csv, default=[],
                    help="regexes naming the doctests of hibsnap's abstractions")
    ap.add_argument('--headline', action='append', default=[],
                    help='regex of "suite: test" names that must not be skipped')
    ap.add_argument('--extra', action='append', default=[],
                    help='KIND=TAPFILE: more results (style, parser, matrix)')
    ap.add_argument('--elapsed', type=int)
    ap.add_argument('--toolchain', help='the versions the run built with, printed atop the summary')
    args = ap.parse_args(argv)
    tally = Tally(args.headline, args.own_doctests)
    if args.demo:
        return demo_run(args, tally)
    test_run(args, tally)
    summary(tally, args.elapsed, args.toolchain)
    return 1 if tally.failed else 0


if __name__ == '__main__':
    sys.exit(main())
