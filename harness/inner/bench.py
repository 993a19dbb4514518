#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The report of `harness/hibsnap bench`: hibsnap against mainline hibernation.

Usage: bench.py --stamped LOG --out DIR [--smoke --tap FILE]

LOG is the benchmark boot's serial output, each line stamped with the host's
clock (stamp.py). Writes DIR/bench.md (a markdown table, a line per goal
with its verdict) and DIR/bench.png (the plot), and prints the table. With
--smoke (the test command's short run) it also writes TAP to FILE: the
report was made, and every measurement it needs is there.

Every figure is the median of its repetitions, with the spread (min-max).
Under TCG absolute times mean little; the ratios, taken in one boot, do.
"""
import argparse
import re
import statistics
import sys

GOALS = {
    'P1': 'memory ceiling: largest anonymous workload imaged, no swap >= 95% of MemTotal',
    'P2': 'atomic pause: IRQs off <= 1/10 of mainline at 400 MiB, flat from 100 to 700 MiB (<= 1.5x)',
    'P3': 'freeze and release of 1,000 and 4,000 tasks <= 1.0x the kernel freezer',
    'P4': 'stream: FD read >= 90% of memcpy at 400 and 700 MiB',
    'P5': 'end to end: hibernate and resume times <= 1.0x mainline, image bytes <= mainline',
}


def parse(path):
    """BENCH lines as dicts (with the host time 't'), and marks by (what, mib, rep)."""
    rows, marks, freeze = [], {}, []
    with open(path, errors='replace') as f:
        for raw in f:
            stamp, _, line = raw.rstrip('\n').partition(' ')
            try:
                t = float(stamp)
            except ValueError:
                continue
            if line.startswith('BENCH-MARK '):
                what, mib, rep = line.split()[1:4]
                marks[(what, int(mib), int(rep))] = t
            elif line.startswith('BENCH '):
                row = dict(kv.split('=', 1) for kv in line.split()[1:] if '=' in kv)
                row['t'] = t
                rows.append(row)
            elif 'HIBSNAP-BENCH freeze' in line:
                freeze.append(line.split('HIBSNAP-BENCH ', 1)[1])
    return rows, marks, freeze


def stat(values):
    """Median and spread, as text; None if there is nothing."""
    values = [v for v in values if v is not None]
    if not values:
        return None, 'n/a'
    med = statistics.median(values)
    if len(values) == 1:
        return med, f'{med:.3g}'
    return med, f'{med:.3g} ({min(values):.3g}-{max(values):.3g}, n={len(values)})'


def host_time(marks, kind, mib, rep):
    begin, end = marks.get((f'{kind}-begin', mib, rep)), marks.get((f'{kind}-end', mib, rep))
    return end - begin if begin is not None and end is not None else None


def report(rows, marks, freeze):
    """The table's lines, the verdicts by goal, and the data for the plot."""
    lines, verdicts, plot = [], {}, {}
    boot = next((r for r in rows if r.get('kind') == 'boot'), {})
    memcpy_med, memcpy_txt = stat([float(r['mibs']) for r in rows if r.get('kind') == 'memcpy'])
    lines.append(f"Benchmark ({boot.get('mode', '?')} run), MemTotal {int(boot.get('memtotal_kb', 0)) >> 10} MiB; "
                 f'VM memcpy {memcpy_txt} MiB/s')
    lines.append('')
    lines.append('| workload | what | hibsnap | mainline | hibsnap / mainline |')
    lines.append('|---|---|---|---|---|')
    sizes = sorted({int(r['mem_mib']) for r in rows if r.get('kind') in ('hibsnap', 'mainline')})
    per = {}
    for mib in sizes:
        for kind in ('hibsnap', 'mainline'):
            rs = [r for r in rows if r.get('kind') == kind and int(r['mem_mib']) == mib]
            ok = [r for r in rs if 'error' not in r]
            errors = sorted({r['error'] for r in rs if 'error' in r})
            per[(kind, mib)] = {
                'host_s': stat([host_time(marks, kind, mib, int(r['rep'])) for r in ok]),
                'irqs_off_ms': stat([float(r['irqs_off_ms']) for r in ok if float(r['irqs_off_ms']) >= 0]),
                'read_mibs': stat([float(r['read_mibs']) for r in ok]),
                'image_mib': stat([float(r['image_mib']) for r in ok]),
                'errors': errors,
            }
        for what, label, unit in (('host_s', 'image taken (host clock)', 's'),
                                  ('irqs_off_ms', 'interrupts off', 'ms'),
                                  ('read_mibs', 'image read', 'MiB/s'),
                                  ('image_mib', 'image size', 'MiB')):
            h, m = per[('hibsnap', mib)], per[('mainline', mib)]
            htxt = h[what][1] if not h['errors'] or h[what][0] is not None else ', '.join(h['errors'])
            mtxt = m[what][1] if not m['errors'] or m[what][0] is not None else ', '.join(m['errors'])
            ratio = (f'{h[what][0] / m[what][0]:.2f}x'
                     if h[what][0] is not None and m[what][0] else 'n/a')
            lines.append(f'| {mib} MiB anonymous | {label} ({unit}) | {htxt} | {mtxt} | {ratio} |')
    plot['sizes'] = sizes
    plot['per'] = per
    plot['memcpy'] = memcpy_med

    # P1: the memory ceiling.
    ceiling = [r for r in rows if r.get('kind') == 'ceiling' and 'hibsnap' in r]
    best = {k: max((int(r['pct']) for r in ceiling if r[k] == 'ok'), default=None)
            for k in ('hibsnap', 'mainline')}
    for r in ceiling:
        lines.append(f"| {r['mem_mib']} MiB ({r['pct']}% of MemTotal), no swap | imaged | "
                     f"{r['hibsnap']} | {r['mainline']} | |")
    plot['ceiling'] = ceiling
    if ceiling:
        verdicts['P1'] = (best['hibsnap'] is not None and best['hibsnap'] >= 95,
                          f"hibsnap up to {best['hibsnap']}% of MemTotal, mainline up to {best['mainline']}%")
    # P2: the atomic pause.
    h400, m400 = per.get(('hibsnap', 400)), per.get(('mainline', 400))
    h100, h700 = per.get(('hibsnap', 100)), per.get(('hibsnap', 700))
    if h400 and h100 and h700:
        off = h400['irqs_off_ms'][0]
        moff = m400['irqs_off_ms'][0] if m400 else None
        flat = h700['irqs_off_ms'][0] / h100['irqs_off_ms'][0] if h100['irqs_off_ms'][0] else None
        met = off is not None and moff is not None and off <= moff / 10 and flat is not None and flat <= 1.5
        vs = f'mainline {moff:.0f} ms' if moff is not None else 'mainline could not image 400 MiB'
        flat_txt = f'{flat:.2f}x' if flat is not None else 'n/a'
        verdicts['P2'] = (met, f'interrupts off at 400 MiB {off:.0f} ms, {vs}; hibsnap 700 vs 100 MiB {flat_txt}')
    # P4: the stream.
    if memcpy_med and h400 and h700:
        r4, r7 = h400['read_mibs'][0], h700['read_mibs'][0]
        met = r4 is not None and r7 is not None and min(r4, r7) >= 0.9 * memcpy_med
        verdicts['P4'] = (met, f'FD read {r4:.0f} and {r7:.0f} MiB/s at 400 and 700 MiB '
                               f'({r4 / memcpy_med:.0%} and {r7 / memcpy_med:.0%} of memcpy, {memcpy_med:.0f} MiB/s)')
    # P3: freeze_bench_test's lines.
    for line in freeze:
        lines.append(f'| freeze | {line} | | | |')
    ratios = [float(x) for line in freeze for x in re.findall(r'\(([\d.]+)x\)', line)]
    if ratios:
        verdicts['P3'] = (max(ratios) <= 1.0, f'ratios {", ".join(f"{r:.2f}x" for r in ratios)}')
    return lines, verdicts, plot


def write_plot(path, plot):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    sizes = plot['sizes']
    for ax, (what, title) in zip(axes[:2], (('irqs_off_ms', 'interrupts off (ms)'),
                                            ('read_mibs', 'image read (MiB/s)'))):
        for kind in ('hibsnap', 'mainline'):
            xs = [s for s in sizes if plot['per'][(kind, s)][what][0] is not None]
            ax.plot(xs, [plot['per'][(kind, s)][what][0] for s in xs], 'o-', label=kind)
        if what == 'read_mibs' and plot['memcpy']:
            ax.axhline(plot['memcpy'], linestyle='--', color='grey', label='VM memcpy')
        ax.set_ylim(bottom=0)
        ax.set_xlabel('anonymous memory (MiB)')
        ax.set_title(title)
        ax.legend()
    ax = axes[2]
    for kind, y in (('hibsnap', 1), ('mainline', 0)):
        for r in plot['ceiling']:
            ax.plot(int(r['pct']), y, 'o', color='green' if r[kind] == 'ok' else 'red')
    ax.axvline(95, linestyle='--', color='grey')
    ax.set_yticks([0, 1], ['mainline', 'hibsnap'])
    ax.set_xlabel('anonymous memory (% of MemTotal), no swap')
    ax.set_title('imaged (green) or not (red)')
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--stamped', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--smoke', action='store_true')
    ap.add_argument('--tap')
    args = ap.parse_args()
    rows, marks, freeze = parse(args.stamped)
    lines, verdicts, plot = report(rows, marks, freeze)
    lines.append('')
    lines.append('| goal | met | figures |')
    lines.append('|---|---|---|')
    for p, goal in GOALS.items():
        met, why = verdicts.get(p, (None, 'not measured by this run'))
        lines.append(f"| {p} {goal} | {'yes' if met else 'no' if met is False else '-'} | {why} |")
    md = '\n'.join(lines) + '\n'
    with open(f'{args.out}/bench.md', 'w') as f:
        f.write(md)
    write_plot(f'{args.out}/bench.png', plot)
    print(md)
    print(f'written: {args.out}/bench.md, {args.out}/bench.png')
    if args.tap:
        checks = [
            ('the benchmark boot ran to its end', any(r.get('kind') == 'done' for r in rows)),
            ('memcpy measured', plot['memcpy'] is not None),
            ('hibsnap imaged 100 MiB, host-timed',
             ('hibsnap', 100) in plot['per'] and plot['per'][('hibsnap', 100)]['host_s'][0] is not None),
            ('mainline imaged 100 MiB, host-timed, its interrupts-off time read',
             ('mainline', 100) in plot['per'] and plot['per'][('mainline', 100)]['host_s'][0] is not None
             and plot['per'][('mainline', 100)]['irqs_off_ms'][0] is not None),
            ('the memory ceiling tried', bool(plot['ceiling'])),
            ('bench.md and bench.png written', True),
        ]
        with open(args.tap, 'w') as f:
            f.write(f'TAP version 13\n1..{len(checks)}\n')
            for i, (name, ok) in enumerate(checks, 1):
                f.write(f"{'ok' if ok else 'not ok'} {i} bench smoke: {name}\n")
    return 0


if __name__ == '__main__':
    sys.exit(main())
