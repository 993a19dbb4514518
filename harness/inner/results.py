#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Read the logs of one hibsnap test boot and count the tests.

console.log (ttyS0) holds the kernel log: KUnit's KTAP output, and whatever
the kernel said about its own health. tests.log (ttyS1) holds what /init ran:
each kselftest's TAP output between HIBSNAP-KSFT-BEGIN/END markers.

Prints each test, then a last line "N passed, N failed, N skipped". Exits 1
if anything failed, if a plan does not match what ran, if a kselftest did not
end, if the boot did not reach its end marker, or if the kernel log has a
BUG, WARNING, Oops, panic, lockdep report, RCU stall or hung task.
"""

import argparse
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


class Tally:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.problems = []

    def result(self, suite, name, ok, directive):
        directive = (directive or '').strip()
        label = f'{suite}: {name}'
        if directive.upper().startswith('SKIP'):
            self.skipped += 1
            print(f'  SKIP  {label} ({directive})')
        elif ok:
            self.passed += 1
            print(f'  ok    {label}')
        else:
            self.failed += 1
            print(f'  FAIL  {label}')

    def problem(self, what):
        self.failed += 1
        self.problems.append(what)
        print(f'  FAIL  {what}')


def ktap_leaves(lines, suite, tally):
    """Count the leaf results of one KTAP/TAP stream; check every plan."""
    # Nesting: one entry per open level, by indent: [planned, seen].
    levels = {}
    names = {}
    prev_indent = None
    if not any(PLAN.match(l) and not PLAN.match(l).group('indent') for l in lines):
        tally.problem(f'{suite}: no top-level plan (1..N)')
    for line in lines:
        m = SUBTEST.match(line)
        if m:
            names[len(m.group('indent'))] = m.group('name')
            continue
        m = PLAN.match(line)
        if m:
            levels[len(m.group('indent'))] = [int(m.group('n')), 0]
            continue
        m = RESULT.match(line)
        if not m:
            continue
        indent = len(m.group('indent'))
        if indent in levels:
            levels[indent][1] += 1
        # A result that closes a deeper block is a suite's summary, not a test.
        closes_block = prev_indent is not None and prev_indent > indent
        if closes_block:
            deeper = [i for i in levels if i > indent]
            for i in deeper:
                planned, seen = levels.pop(i)
                if planned != seen:
                    tally.problem(f'{suite}: {m.group("name")}: plan 1..{planned} but {seen} results')
            if m.group('ok') == 'not ok' and not (m.group('directive') or '').upper().startswith('SKIP'):
                # The children say what failed; a failed summary with
                # passing children is still a failure worth counting.
                pass
        else:
            name = m.group('name')
            if indent in names:
                name = f'{names[indent]}.{name}'
            tally.result(suite, name, m.group('ok') == 'ok', m.group('directive'))
        prev_indent = indent
    for indent, (planned, seen) in levels.items():
        if planned != seen:
            tally.problem(f'{suite}: plan 1..{planned} at depth {indent} but {seen} results')


def kunit(console, tally):
    lines = [TIMESTAMP.sub('', l.rstrip('\r\n')) for l in console]
    try:
        start = next(i for i, l in enumerate(lines) if l.strip() == 'KTAP version 1')
    except StopIteration:
        tally.problem('kunit: no KTAP output in the kernel log')
        return
    ktap = [l for l in lines[start:] if RESULT.match(l) or PLAN.match(l) or SUBTEST.match(l)]
    before = tally.passed + tally.failed + tally.skipped
    ktap_leaves(ktap, 'kunit', tally)
    if tally.passed + tally.failed + tally.skipped == before:
        tally.problem('kunit: no test results')


def kselftests(tests, tally):
    current, body, seen = None, [], 0
    for raw in tests:
        line = raw.rstrip('\r\n')
        if line.startswith('HIBSNAP-KSFT-BEGIN '):
            current, body = line.split()[1], []
            continue
        if line.startswith('HIBSNAP-KSFT-END ') and current:
            seen += 1
            rc = line.rsplit('rc=', 1)[-1]
            before = (tally.passed, tally.failed)
            ktap_leaves(body, current, tally)
            if (tally.passed, tally.failed) == before and tally.skipped == 0:
                tally.problem(f'{current}: ran no test')
            if rc not in ('0', '4') and tally.failed == before[1]:
                tally.problem(f'{current}: exited with {rc} but reported no failure')
            current = None
            continue
        if current:
            body.append(line)
    if current:
        tally.problem(f'{current}: did not finish (crash, hang or timeout)')
    if seen == 0:
        tally.problem('kselftest: no kselftest ran')


def kernel_health(console, tally):
    for raw in console:
        line = TIMESTAMP.sub('', raw.rstrip('\r\n'))
        if any(p.search(line) for p in BAD_KERNEL_LINES):
            tally.problem(f'kernel log: {line.strip()}')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('console')
    ap.add_argument('tests')
    ap.add_argument('--demo', action='store_true')
    ap.add_argument('--style', help='TAP output of the style checks')
    ap.add_argument('--elapsed', type=int)
    args = ap.parse_args()
    with open(args.console, errors='replace') as f:
        console = f.readlines()
    try:
        with open(args.tests, errors='replace') as f:
            tests = f.readlines()
    except FileNotFoundError:
        tests = []
    tally = Tally()
    ended = any(l.startswith('HIBSNAP-END') for l in tests)
    if args.demo:
        kernel_health(console, tally)
        for l in tests:
            if l.startswith('DEMO: PASS'):
                tally.passed += 1
            elif l.startswith('DEMO: FAIL'):
                tally.failed += 1
        if not ended:
            tally.problem('the demo did not reach its end (see the console log)')
        ok = tally.failed == 0 and tally.passed > 0
        print(f'demo {"succeeded" if ok else "FAILED"}; kernel log: {args.console}')
        return 0 if ok else 1
    print('KUnit (built in, run at boot):')
    kunit(console, tally)
    print('kselftests (run by /init):')
    kselftests(tests, tally)
    if args.style:
        print('style (rustfmt, checkpatch --strict):')
        with open(args.style, errors='replace') as f:
            ktap_leaves([l.rstrip('\n') for l in f], 'style', tally)
    print('kernel log health:')
    kernel_health(console, tally)
    if not ended:
        tally.problem('boot: /init did not reach its end marker (crash, hang or timeout)')
    if tally.problems:
        print(f'{len(tally.problems)} problem(s); console log: {args.console}, test log: {args.tests}')
    if args.elapsed is not None:
        print(f'took {args.elapsed} s')
    print(f'{tally.passed} passed, {tally.failed} failed, {tally.skipped} skipped')
    return 1 if tally.failed else 0


if __name__ == '__main__':
    sys.exit(main())
