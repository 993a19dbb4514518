#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The report of `harness/hibsnap bench`: hibsnap against mainline hibernation.

Usage: bench.py --stamped LOG --e2e LIST --out DIR [--smoke --tap FILE]
       bench.py --nonzero DISK

LOG is the benchmark boot's serial output, each line stamped with the host's
clock (stamp.py); its kernel log (LOG's NAME-console.log) gives the phases
of the atomic pause and where the memory went. LIST has a line per
end-to-end cycle ("E2E sys=... rep=... name=NAME disk_bytes=..."), whose two
boots' logs are NAME-save-* and NAME-load-* beside LOG. Writes DIR/bench.md
(markdown tables, a line per goal with its verdict) and DIR/bench.png (the
plot), and prints the tables. With --smoke (the test command's short run) it
also writes TAP to FILE: the report was made, and every measurement it needs
is there. --nonzero prints the bytes of DISK in 4 KiB blocks that are not
all zero: what an image left on a fresh (sparse) disk.

Every figure is the median of its repetitions, with the spread (min-max).
Under TCG absolute times mean little; the ratios, taken in one boot, do.
"""
import argparse
import os
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


def nonzero(path):
    """Bytes of @path in 4 KiB blocks that hold anything but zeros (holes skipped)."""
    total, zero = 0, bytes(4096)
    with open(path, 'rb') as f:
        fd, end, pos = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while pos < end:
            try:
                pos = os.lseek(fd, pos, os.SEEK_DATA)
                hole = os.lseek(fd, pos, os.SEEK_HOLE)
            except OSError:
                break
            f.seek(pos)
            while pos < hole:
                data = f.read(min(1 << 20, hole - pos))
                if not data:
                    break
                for i in range(0, len(data), 4096):
                    block = data[i:i + 4096]
                    if block != zero[:len(block)]:
                        total += 4096
                pos += len(data)
    return total


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
            if line in ('STAMP-OPEN', 'STAMP-EOF'):
                marks[(line, 0, 0)] = t
            elif line.startswith('BENCH-MARK '):
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


def host_time(marks, kind, workload, mib, rep):
    begin = marks.get((f'{kind}-{workload}-begin', mib, rep))
    end = marks.get((f'{kind}-{workload}-end', mib, rep))
    return end - begin if begin is not None and end is not None else None


KERNEL_TIME = re.compile(r'^\[\s*(\d+\.\d+)\] (.*)$')


def console_lines(path):
    """The kernel log's (time, text) pairs; [] if there is none."""
    try:
        with open(path, errors='replace') as f:
            return [(float(m.group(1)), m.group(2)) for m in map(KERNEL_TIME.match, f) if m]
    except FileNotFoundError:
        return []


def pause_phases(console):
    """
    Each image's atomic pause in the kernel's own words (PM debug messages):
    "Creating image" to "Need to copy" is the count (a walk over every page
    frame), "Need to copy" to "Image created" the copy (another walk, and the
    copying). Which system took it: the last of hibsnap's "reserved" and
    mainline's "Preallocating image memory" before it.
    """
    images, kind, begin, counted = [], None, None, None
    for t, text in console:
        if 'hibsnap: reserved' in text:
            kind = 'hibsnap'
        elif 'Preallocating image memory' in text:
            kind = 'mainline'
        elif text.endswith('Creating image'):
            begin, counted = t, None
        elif 'Need to copy' in text and begin is not None:
            counted = t
        elif 'Image created' in text and counted is not None and kind:
            m = re.search(r'\((\d+) pages copied', text)
            images.append({'kind': kind, 'count_ms': (counted - begin) * 1e3,
                           'copy_ms': (t - counted) * 1e3, 'pages': int(m.group(1)) if m else None})
            begin = counted = None
    return images


def reserve_short(console):
    """hibsnap's last "reserve N pages short" line, in numbers, or None."""
    for _, text in reversed(console):
        m = re.search(r'reserve (\d+) pages short: need (\d+) \(kernel (\d+), overhead (\d+), '
                      r'metadata (\d+)\), (\d+) pages free of (\d+)', text)
        if m:
            return dict(zip(('short', 'need', 'kernel', 'overhead', 'meta', 'free', 'total'),
                            (int(x) for x in m.groups())))
    return None


def mib_of_pages(pages):
    return f'{pages * 4096 / (1 << 20):.1f} MiB'


def e2e_cycles(e2e_path, stamped_dir):
    """The end-to-end cycles: per system, each repetition's figures."""
    cycles = []
    try:
        with open(e2e_path) as f:
            entries = [dict(kv.split('=', 1) for kv in line.split()[1:]) for line in f if line.startswith('E2E ')]
    except (FileNotFoundError, TypeError):
        return cycles
    for e in entries:
        name = e['name']
        save_rows, save_marks, _ = parse(os.path.join(stamped_dir, f'{name}-save-tests.stamped'))
        load_rows, load_marks, _ = parse(os.path.join(stamped_dir, f'{name}-load-tests.stamped'))
        begin = save_marks.get(('e2e-hibernate-begin', 0, 0))
        off = save_marks.get(('STAMP-EOF', 0, 0))
        on = load_marks.get(('STAMP-OPEN', 0, 0))
        running = load_marks.get(('e2e-resumed', 0, 0))
        verify = next((r for r in load_rows if r.get('kind') == 'verify'), {})
        stream_mib = None
        if e['sys'] == 'hibsnap':
            try:
                with open(os.path.join(stamped_dir, f'{name}-save-tests.log'), errors='replace') as f:
                    m = re.search(r'image: (\d+) MiB of stream', f.read())
                stream_mib = float(m.group(1)) if m else None
            except FileNotFoundError:
                pass
        else:
            for _, text in console_lines(os.path.join(stamped_dir, f'{name}-save-console.log')):
                m = re.search(r'Wrote (\d+) kbytes', text)
                if m:
                    stream_mib = int(m.group(1)) / 1024
        hold = next((r for r in save_rows if r.get('kind') == 'e2e-hold'), {})
        cycles.append({
            'sys': e['sys'], 'rep': e['rep'], 'mem_mib': int(hold.get('mem_mib', 0)),
            'memtotal_mib': int(next((r for r in save_rows if r.get('kind') == 'boot'), {})
                                .get('memtotal_kb', 0)) >> 10,
            'hibernate_s': off - begin if off is not None and begin is not None else None,
            'resume_s': running - on if running is not None and on is not None else None,
            # Until the held memory was all read back (mainline's swapped-out part faulted in).
            'back_s': verify['t'] - on if verify and on is not None else None,
            'disk_mib': int(e['disk_bytes']) / (1 << 20),
            'stream_mib': stream_mib,
            'verified': verify.get('ok') == '1',
        })
    return cycles


def report(rows, marks, freeze, console, cycles):
    """The tables' lines, the verdicts by goal, and the data for the plot."""
    lines, verdicts, plot = [], {}, {}
    boot = next((r for r in rows if r.get('kind') == 'boot'), {})
    memcpy_med, memcpy_txt = stat([float(r['mibs']) for r in rows if r.get('kind') == 'memcpy'])
    lines.append(f"Benchmark ({boot.get('mode', '?')} run), MemTotal {int(boot.get('memtotal_kb', 0)) >> 10} MiB; "
                 f'VM memcpy {memcpy_txt} MiB/s')
    lines.append('')
    lines.append('| workload | what | hibsnap | mainline | hibsnap / mainline |')
    lines.append('|---|---|---|---|---|')
    images = [r for r in rows if r.get('kind') in ('hibsnap', 'mainline')]
    for r in images:
        r.setdefault('workload', 'anon')
    workloads = sorted({(r['workload'], int(r['mem_mib'])) for r in images},
                       key=lambda w: (w[0] != 'anon', w[1]))
    per = {}
    for workload, mib in workloads:
        for kind in ('hibsnap', 'mainline'):
            rs = [r for r in images if r['kind'] == kind and r['workload'] == workload
                  and int(r['mem_mib']) == mib]
            ok = [r for r in rs if 'error' not in r]
            errors = sorted({r['error'] for r in rs if 'error' in r})
            per[(kind, workload, mib)] = {
                'host_s': stat([host_time(marks, kind, workload, mib, int(r['rep'])) for r in ok]),
                'irqs_off_ms': stat([float(r['irqs_off_ms']) for r in ok if float(r['irqs_off_ms']) >= 0]),
                'read_mibs': stat([float(r['read_mibs']) for r in ok]),
                'image_mib': stat([float(r['image_mib']) for r in ok]),
                'errors': errors,
            }
        label = f'{mib} MiB anonymous' if workload == 'anon' else f'{mib} MiB {workload} (ext4)'
        for what, name, unit in (('host_s', 'image taken (host clock)', 's'),
                                 ('irqs_off_ms', 'interrupts off', 'ms'),
                                 ('read_mibs', 'image read', 'MiB/s'),
                                 ('image_mib', 'image size', 'MiB')):
            h, m = per[('hibsnap', workload, mib)], per[('mainline', workload, mib)]
            htxt = h[what][1] if not h['errors'] or h[what][0] is not None else ', '.join(h['errors'])
            mtxt = m[what][1] if not m['errors'] or m[what][0] is not None else ', '.join(m['errors'])
            ratio = (f'{h[what][0] / m[what][0]:.2f}x'
                     if h[what][0] is not None and m[what][0] else 'n/a')
            lines.append(f'| {label} | {name} ({unit}) | {htxt} | {mtxt} | {ratio} |')
    sizes = sorted(mib for w, mib in workloads if w == 'anon')
    plot['sizes'] = sizes
    plot['per'] = per
    plot['memcpy'] = memcpy_med

    # The atomic pause, phase by phase, from the kernel's log.
    phases = pause_phases(console)
    for kind in ('hibsnap', 'mainline'):
        ps = [p for p in phases if p['kind'] == kind]
        if ps:
            lines.append(f'| every image of the boot (n={len(ps)}) | {kind}: interrupts off, count walk / '
                         f'copy walk and copying (ms) | {stat([p["count_ms"] for p in ps])[1]} / '
                         f'{stat([p["copy_ms"] for p in ps])[1]} | | |')
    plot['phases'] = phases

    # P1: the memory ceiling.
    ceiling = [r for r in rows if r.get('kind') == 'ceiling' and 'hibsnap' in r]
    best = {k: max((int(r['pct']) for r in ceiling if r[k] == 'ok'), default=None)
            for k in ('hibsnap', 'mainline')}
    for r in ceiling:
        lines.append(f"| {r['mem_mib']} MiB ({r['pct']}% of MemTotal), no swap | imaged | "
                     f"{r['hibsnap']} | {r['mainline']} | |")
    plot['ceiling'] = ceiling
    if ceiling:
        why = f"hibsnap up to {best['hibsnap']}% of MemTotal, mainline up to {best['mainline']}%"
        short = reserve_short(console)
        first_fail = next((r for r in ceiling if r['hibsnap'] != 'ok'), None)
        info = next((r for r in rows if r.get('kind') == 'meminfo' and first_fail
                     and r.get('pct') == first_fail['pct']), None)
        if short and first_fail:
            why += (f"; at {first_fail['pct']}% the reserve was {mib_of_pages(short['short'])} short: "
                    f"it needs the kernel's copy {mib_of_pages(short['kernel'])} + 1/8 slack + "
                    f"metadata {mib_of_pages(short['meta'])} + overhead {mib_of_pages(short['overhead'])}, "
                    f"{mib_of_pages(short['free'])} were free")
        if info:
            # Shmem is kept in place (copy-before-write), not copied: shown apart.
            why += ('; the kernel memory copied, from /proc/meminfo before the try: ' + ', '.join(
                f"{k[:-3]} {int(info[k]) / 1024:.1f} MiB" for k in
                ('Slab_kb', 'PageTables_kb', 'KernelStack_kb', 'VmallocUsed_kb', 'Percpu_kb')
                if k in info))
            if 'Shmem_kb' in info:
                why += f" (Shmem {int(info['Shmem_kb']) / 1024:.1f} MiB is kept in place, not copied)"

        booted = next((re.search(r'(\d+)K bss, (\d+)K reserved', text) for _, text in console
                       if text.startswith('Memory:')), None)
        if booted:
            why += (f"; and memory MemTotal does not count, reserved at boot ({int(booted.group(2)) >> 10} MiB: "
                    f"the struct page array, the kernel's image with its bss of {int(booted.group(1)) >> 10} MiB, ...)")
        verdicts['P1'] = (best['hibsnap'] is not None and best['hibsnap'] >= 95, why)
    # P2: the atomic pause.
    h400, m400 = per.get(('hibsnap', 'anon', 400)), per.get(('mainline', 'anon', 400))
    h100, h700 = per.get(('hibsnap', 'anon', 100)), per.get(('hibsnap', 'anon', 700))
    if h400 and h100 and h700:
        off = h400['irqs_off_ms'][0]
        moff = m400['irqs_off_ms'][0] if m400 else None
        flat = h700['irqs_off_ms'][0] / h100['irqs_off_ms'][0] if h100['irqs_off_ms'][0] else None
        met = off is not None and moff is not None and off <= moff / 10 and flat is not None and flat <= 1.5
        vs = f'mainline {moff:.0f} ms' if moff is not None else 'mainline could not image 400 MiB'
        flat_txt = f'{flat:.2f}x' if flat is not None else 'n/a'
        why = f'interrupts off at 400 MiB {off:.0f} ms, {vs}; hibsnap 700 vs 100 MiB {flat_txt}'
        walks = [p['count_ms'] for p in phases]
        if walks:
            why += (f'; the kernel\'s count walk over every page frame alone takes '
                    f'{statistics.median(walks):.0f} ms (median, both systems), and the copy walks as many')
        verdicts['P2'] = (met, why)
    # P4: the stream, beside the kernel's own copy to user space (a cached file's read).
    cached_med, cached_txt = stat([float(r['cached_read_mibs']) for r in rows
                                   if r.get('kind') == 'pagecache' and 'cached_read_mibs' in r])
    if cached_med:
        lines.append(f'| page cache (ext4) | read() of the cached files, for comparison (MiB/s) | '
                     f'{cached_txt} | | |')
    if memcpy_med and h400 and h700:
        r4, r7 = h400['read_mibs'][0], h700['read_mibs'][0]
        met = r4 is not None and r7 is not None and min(r4, r7) >= 0.9 * memcpy_med
        why = (f'FD read {r4:.0f} and {r7:.0f} MiB/s at 400 and 700 MiB '
               f'({r4 / memcpy_med:.0%} and {r7 / memcpy_med:.0%} of memcpy, {memcpy_med:.0f} MiB/s)')
        if cached_med:
            why += (f'; a read() of cached files, the kernel\'s own copy to user space, runs at '
                    f'{cached_med:.0f} MiB/s ({cached_med / memcpy_med:.0%} of memcpy)')
        verdicts['P4'] = (met, why)
    # P3: freeze_bench_test's lines.
    for line in freeze:
        lines.append(f'| freeze | {line} | | | |')
    ratios = [float(x) for line in freeze for x in re.findall(r'\(([\d.]+)x\)', line)]
    if ratios:
        verdicts['P3'] = (max(ratios) <= 1.0, f'ratios {", ".join(f"{r:.2f}x" for r in ratios)}')

    # P1 with the tool: a round trip at a share of MemTotal, hibsnap alone (mainline cannot).
    for c in (c for c in cycles if c['rep'] == 'ceiling'):
        ok = c['verified'] and c['resume_s'] is not None
        pct = c['mem_mib'] * 100 // c['memtotal_mib'] if c['memtotal_mib'] else 0
        lines.append(f"| {c['mem_mib']} MiB ({pct}% of MemTotal), no swap | round trip through the tool "
                     f"(hibernate, power off, resume, memory checked) | {'ok' if ok else 'failed'} | | |")
        if 'P1' in verdicts:
            met, why = verdicts['P1']
            verdicts['P1'] = (met, f"{why}; with the tool, {pct}% round-trips: {'yes' if ok else 'no'}")
    # P5: end to end.
    cycles = [c for c in cycles if c['rep'] != 'ceiling']
    plot['e2e'] = cycles
    if cycles:
        mib = cycles[0]['mem_mib']
        lines.append('')
        lines.append(f'End to end, a process holding {mib} MiB (half random, half text): hibsnap\'s tool '
                     'to a disk, mainline `echo disk > /sys/power/state` to swap (its default compression)')
        lines.append('')
        lines.append('| what | hibsnap | mainline | hibsnap / mainline |')
        lines.append('|---|---|---|---|')
        med = {}
        for what, name in (('hibernate_s', 'hibernate: call to power off (s)'),
                           ('resume_s', 'resume: switched on to processes running (s)'),
                           ('back_s', 'resume: switched on to the held memory all read back (s)'),
                           ('disk_mib', 'image on the disk (MiB)'),
                           ('stream_mib', 'image before compression (MiB)')):
            cells = []
            for sys_ in ('hibsnap', 'mainline'):
                med[(sys_, what)], txt = stat([c[what] for c in cycles if c['sys'] == sys_])
                cells.append(txt)
            h, m = med[('hibsnap', what)], med[('mainline', what)]
            ratio = f'{h / m:.2f}x' if h is not None and m else 'n/a'
            lines.append(f'| {name} | {cells[0]} | {cells[1]} | {ratio} |')
        intact = [f"{sum(c['verified'] for c in cycles if c['sys'] == s_)} of "
                  f"{sum(c['sys'] == s_ for c in cycles)}" for s_ in ('hibsnap', 'mainline')]
        lines.append(f'| held memory intact after resume | {intact[0]} | {intact[1]} | |')
        figures = [med[(s_, w)] for s_ in ('hibsnap', 'mainline')
                   for w in ('hibernate_s', 'resume_s', 'disk_mib')]
        if None not in figures:
            ratios = {w: med[('hibsnap', w)] / med[('mainline', w)]
                      for w in ('hibernate_s', 'resume_s', 'disk_mib')}
            verdicts['P5'] = (all(r <= 1.0 for r in ratios.values()),
                              f"hibernate {ratios['hibernate_s']:.2f}x, resume {ratios['resume_s']:.2f}x, "
                              f"image bytes {ratios['disk_mib']:.2f}x mainline's")
    return lines, verdicts, plot


def write_plot(path, plot):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    sizes = plot['sizes']
    for ax, (what, title) in zip(axes[:2], (('irqs_off_ms', 'interrupts off (ms)'),
                                            ('read_mibs', 'image read (MiB/s)'))):
        for kind in ('hibsnap', 'mainline'):
            xs = [s for s in sizes if plot['per'][(kind, 'anon', s)][what][0] is not None]
            ax.plot(xs, [plot['per'][(kind, 'anon', s)][what][0] for s in xs], 'o-', label=kind)
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
    ax = axes[3]
    whats = (('hibernate_s', 'hibernate (s)'), ('resume_s', 'resume (s)'), ('disk_mib', 'image (100 MiB)'))
    for i, kind in enumerate(('hibsnap', 'mainline')):
        values = []
        for what, _ in whats:
            v = [c[what] for c in plot['e2e'] if c['sys'] == kind and c[what] is not None]
            v = statistics.median(v) if v else 0
            values.append(v / 100 if what == 'disk_mib' else v)
        ax.bar([j + i * 0.4 for j in range(len(whats))], values, 0.4, label=kind)
    ax.set_xticks([j + 0.2 for j in range(len(whats))], [w[1] for w in whats])
    ax.set_title('end to end (medians)')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--nonzero')
    ap.add_argument('--stamped')
    ap.add_argument('--e2e')
    ap.add_argument('--out')
    ap.add_argument('--smoke', action='store_true')
    ap.add_argument('--tap')
    args = ap.parse_args()
    if args.nonzero:
        print(nonzero(args.nonzero))
        return 0
    if not args.stamped or not args.out:
        ap.error('--stamped and --out are needed')
    rows, marks, freeze = parse(args.stamped)
    console = console_lines(args.stamped.replace('-tests.stamped', '-console.log'))
    cycles = e2e_cycles(args.e2e, os.path.dirname(args.stamped) or '.')
    lines, verdicts, plot = report(rows, marks, freeze, console, cycles)
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
        per = plot['per']

        def imaged(kind, workload):
            return any(k == kind and w == workload and v['host_s'][0] is not None
                       for (k, w, _), v in per.items())

        def cycle(sys_):
            return any(c['sys'] == sys_ and c['hibernate_s'] is not None and c['resume_s'] is not None
                       and c['verified'] and c['disk_mib'] > 0 for c in cycles)
        checks = [
            ('the benchmark boot ran to its end', any(r.get('kind') == 'done' for r in rows)),
            ('memcpy measured', plot['memcpy'] is not None),
            ('hibsnap imaged anonymous memory, host-timed', imaged('hibsnap', 'anon')),
            ('mainline imaged anonymous memory, host-timed, its interrupts-off time read',
             imaged('mainline', 'anon') and any(p['kind'] == 'mainline' for p in plot['phases'])),
            ('both imaged the page cache of files on ext4 on dm-hibsnap',
             imaged('hibsnap', 'pagecache') and imaged('mainline', 'pagecache')),
            ('the memory ceiling tried', bool(plot['ceiling'])),
            ('end to end: hibsnap hibernated, powered off, resumed, memory intact', cycle('hibsnap')),
            ('end to end: mainline hibernated, powered off, resumed, memory intact', cycle('mainline')),
            ('bench.md and bench.png written', True),
        ]
        with open(args.tap, 'w') as f:
            f.write(f'TAP version 13\n1..{len(checks)}\n')
            for i, (name, ok) in enumerate(checks, 1):
                f.write(f"{'ok' if ok else 'not ok'} {i} bench smoke: {name}\n")
    return 0


if __name__ == '__main__':
    sys.exit(main())
