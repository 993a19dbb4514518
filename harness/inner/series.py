#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""hibsnap's patch series: assembled from patches/series, formatted, checked.

patches/series lists the patches of the series in order. Each entry is a patch
file in patches/ (its commit message, and its edits to files the kernel
already has, if any), followed by the new files it adds, one path or glob per
line, indented:

    rust-add-a-fault-injection-abstraction.patch
        rust/kernel/fault_inject.rs
        rust/helpers/fault_inject.c

assemble   builds the series as one commit per entry on the base tree of the
           kernel source (tag "base"), with a scratch index: every patch must
           apply in order, and every new file of the repository must be in
           exactly one entry. Prints the last commit. The same commits are the
           tree that is built and booted, and the series that is sent.
format     writes git format-patch output of base..HEAD, with a cover letter.
check      the gates, as TAP: per patch, that it builds in order (rust/, the
           objects of the C files it touches, our directories; incremental,
           skipped for a tree that passed before), checkpatch --strict, no new
           kernel-doc warning; then the UAPI header test, the rst and the man
           pages.
"""

import argparse
import fnmatch
import glob
import os
import re
import shutil
import subprocess
import sys

REPO = '/hibsnap/repo'
CACHE = '/hibsnap/cache'
SRC = f'{CACHE}/src'
# Where the repository's kernel files live; the assemble step takes every
# file under these paths.
KERNEL_PATHS = ['rust', 'kernel', 'drivers', 'include', 'Documentation', 'tools',
                'arch', 'scripts', 'mm', 'fs', 'MAINTAINERS']
# Commits are made reproducible: the same series gives the same commit ids.
DATE = '2026-01-01T00:00:00+0000'


def die(msg):
    print(f'hibsnap: error: {msg}', file=sys.stderr)
    sys.exit(1)


def run(args, cwd=None, env=None, check=True, input=None):
    r = subprocess.run(args, cwd=cwd, env=env, input=input, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        die(f"{' '.join(args)}: {r.stderr.strip()}")
    return r


def git(*args, env=None, check=True, input=None, cwd=SRC):
    return run(['git', '-C', cwd, '-c', 'user.name=hibsnap', '-c',
                'user.email=hibsnap@localhost', *args],
               env=env, check=check, input=input).stdout.strip()


def parse_series(path):
    """The entries of patches/series: [(patch file, [path or glob, ...])]."""
    entries = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith('#'):
                continue
            if line[0] in ' \t':
                if not entries:
                    die(f'{path}:{n}: a file before any patch')
                entries[-1][1].append(line.strip())
            else:
                entries.append((line.strip(), []))
    return entries


def parse_patch(path):
    """(author, subject, body, has_diff) of a patch file in git format-patch form."""
    text = open(path).read()
    head, sep, _ = text.partition('\n---\n')
    if not sep:
        die(f'{path}: no "---" line after the commit message')
    m = re.match(r'From: (.*)\nSubject: (?:\[PATCH[^]]*\] )?(.*)\n\n', head)
    if not m:
        die(f'{path}: no From: and Subject: header')
    body = head[m.end():].strip('\n') + '\n'
    return m.group(1), m.group(2), body, 'diff --git ' in text


def repo_files():
    out = git('ls-files', '-co', '--exclude-standard', '--', *KERNEL_PATHS, cwd=REPO)
    return [f for f in out.splitlines() if f and os.path.isfile(f'{REPO}/{f}')]


def assemble(args):
    entries = parse_series(f'{REPO}/patches/series')
    files = repo_files()
    idx = f'{CACHE}/series.index'
    env = dict(os.environ, GIT_INDEX_FILE=idx, GIT_AUTHOR_DATE=DATE,
               GIT_COMMITTER_DATE=DATE, GIT_COMMITTER_NAME='hibsnap',
               GIT_COMMITTER_EMAIL='hibsnap@localhost')
    if os.path.exists(idx):
        os.unlink(idx)
    git('read-tree', 'base', env=env)
    parent = git('rev-parse', 'base')
    placed = {}
    for patch, globs in entries:
        path = f'{REPO}/patches/{patch}'
        if not os.path.isfile(path):
            die(f'patches/series names {patch}, which is not in patches/')
        author, subject, body, has_diff = parse_patch(path)
        if has_diff:
            r = run(['git', '-C', SRC, 'apply', '--cached', '--whitespace=error-all', path],
                    env=env, check=False)
            if r.returncode != 0:
                die(f'patch {patch} does not apply after the ones before it:\n{r.stderr}')
        for g in globs:
            matched = [f for f in files if fnmatch.fnmatchcase(f, g)]
            if not matched:
                die(f'patches/series: {g} (under {patch}) names no file of the repository')
            for f in matched:
                if f in placed:
                    die(f'{f} is in two patches: {placed[f]} and {patch}')
                placed[f] = patch
                if run(['git', '-C', SRC, 'cat-file', '-e', f'base:{f}'], check=False).returncode == 0:
                    die(f'{f} exists in the kernel tree: keep edits to it in patches/, not as a copy')
                blob = git('hash-object', '-w', f'{REPO}/{f}')
                mode = '100755' if os.access(f'{REPO}/{f}', os.X_OK) else '100644'
                git('update-index', '--add', '--cacheinfo', f'{mode},{blob},{f}', env=env)
        tree = git('write-tree', env=env)
        name, _, email = author.partition(' <')
        cenv = dict(env, GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email.rstrip('>'))
        parent = git('commit-tree', tree, '-p', parent, input=f'{subject}\n\n{body}', env=cenv)
    missing = [f for f in files if f not in placed]
    if missing:
        die('files of the repository in no patch of patches/series: ' + ', '.join(missing))
    os.unlink(idx)
    print(parent)


def cover_letter(n):
    """The cover letter's subject and blurb: patches/cover-letter, with the benchmark table
    of README.md where it says @BENCHMARK@."""
    text = open(f'{REPO}/patches/cover-letter').read()
    subject, _, blurb = text.partition('\n\n')
    # The benchmark's table: the one whose header starts "| workload |".
    lines = open(f'{REPO}/README.md').read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('| workload |')), None)
    table = ''
    if start is not None:
        end = start
        while end < len(lines) and lines[end].startswith('|'):
            end += 1
        table = '\n'.join(lines[start:end])
    return subject.strip(), blurb.replace('@BENCHMARK@', table or '(no benchmark table yet)')


def format_series(args):
    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    env = dict(os.environ, GIT_AUTHOR_DATE=DATE, GIT_COMMITTER_DATE=DATE)
    # The cover letter is the series' author's, as the patches are.
    author = parse_patch(f"{REPO}/patches/{parse_series(f'{REPO}/patches/series')[0][0]}")[0]
    name, _, email = author.partition(' <')
    run(['git', '-C', SRC, '-c', f'user.name={name}', '-c', f"user.email={email.rstrip('>')}",
         'format-patch', '-q', '--cover-letter', '--thread=shallow', '--base=base',
         '--zero-commit', '-o', out, 'base..HEAD'], env=env)
    patches = sorted(glob.glob(f'{out}/*.patch'))
    cover = patches[0]
    subject, blurb = cover_letter(len(patches) - 1)
    text = open(cover).read()
    text = text.replace('*** SUBJECT HERE ***', subject).replace('*** BLURB HERE ***', blurb.strip())
    open(cover, 'w').write(text)
    print(f'{len(patches) - 1} patches and a cover letter in {out}')


def touched(commit):
    out = git('diff-tree', '--no-commit-id', '--name-status', '-r', f'{commit}^', commit)
    return [(l.split('\t')[0], l.split('\t')[-1]) for l in out.splitlines()]


def build_targets(files, build):
    """What to build for a patch that touches `files`: rust/ always (the kernel crate and
    bindings, incrementally), the objects of the C files the configuration builds, and
    hibsnap's directories when touched."""
    targets = ['rust/']
    for f in files:
        for d in ('kernel/power/', 'drivers/md/'):
            if f.startswith(d) and d not in targets:
                targets.append(d)
        if f.startswith('arch/x86/entry/syscalls/') and 'arch/x86/entry/' not in targets:
            targets.append('arch/x86/entry/')
    # Single objects, but none in a directory built whole: two makes in one directory race.
    for f in files:
        if f.endswith('.c') and os.path.exists(f'{build}/{f[:-2]}.o') \
                and not any(f.startswith(t) for t in targets):
            targets.append(f[:-2] + '.o')
    return targets


def kerneldoc_warnings(src_text, name, tmpdir):
    path = f'{tmpdir}/{os.path.basename(name)}'
    with open(path, 'w') as f:
        f.write(src_text)
    r = run([f'{SRC}/scripts/kernel-doc', '-none', '-Wall', path], check=False, cwd=SRC)
    # Without line numbers: a warning that only moved is not new.
    return {re.sub(r':\d+([: ])', r'\1', l).replace(path, name)
            for l in (r.stderr + r.stdout).splitlines() if 'warning' in l.lower()}


def check(args):
    build = args.build
    wt = f'{CACHE}/series-src'
    stamps = f'{CACHE}/series-stamps'
    os.makedirs(stamps, exist_ok=True)
    os.makedirs(build, exist_ok=True)
    if not os.path.exists(f'{wt}/.git'):
        shutil.rmtree(wt, ignore_errors=True)
        git('worktree', 'prune')
        git('worktree', 'add', '-q', '--detach', wt, 'base')
    if not os.path.exists(f'{build}/.config') or \
            open(f'{build}/.config').read() != open(f'{CACHE}/build/.config').read():
        shutil.copy(f'{CACHE}/build/.config', f'{build}/.config')
    commits = git('rev-list', '--reverse', 'base..HEAD').splitlines()
    patches = sorted(glob.glob(f'{args.out}/0*.patch'))[1:]
    if len(patches) != len(commits):
        die(f'{len(patches)} formatted patches for {len(commits)} commits: run "series" first')
    tap = []
    tmp = f'{CACHE}/series-tmp'
    os.makedirs(tmp, exist_ok=True)
    for i, (c, p) in enumerate(zip(commits, patches), 1):
        name = os.path.basename(p)
        files = touched(c)
        # Builds in order.
        tree = git('rev-parse', f'{c}^{{tree}}')
        if os.path.exists(f'{stamps}/{tree}'):
            tap.append((True, f'{name}: builds (passed before for this tree)', ''))
        else:
            git('checkout', '-q', '--detach', c, cwd=wt)
            targets = build_targets([f for _, f in files], f'{CACHE}/build')
            r = run(['make', '-C', wt, f'O={build}', 'LLVM=1', 'CLIPPY=1',
                     f'-j{args.jobs}', *targets], check=False)
            log = r.stdout + r.stderr
            warn = [l for l in log.splitlines() if re.search(r'(^|: )(warning|error)[:\[]', l)]
            ok = r.returncode == 0 and not warn
            if ok:
                open(f'{stamps}/{tree}', 'w').close()
            tap.append((ok, f'{name}: builds ({" ".join(targets)})',
                        '\n'.join(warn[:20] or log.splitlines()[-20:]) if not ok else ''))
        # checkpatch --strict. Its question whether MAINTAINERS needs updating for a new
        # file is answered for the whole series below (every new file has an entry).
        r = run(['perl', 'scripts/checkpatch.pl', '--strict', '-q', '--terse',
                 '--ignore', 'FILE_PATH_CHANGES', p], cwd=SRC, check=False)
        bad = [l for l in r.stdout.splitlines() if re.search(r': (ERROR|WARNING|CHECK):', l)]
        tap.append((r.returncode == 0 and not bad, f'{name}: checkpatch --strict',
                    '\n'.join(bad)))
        # No new kernel-doc warning in the C files and headers it touches.
        new = []
        for status, f in files:
            if not re.search(r'\.[ch]$', f) or f.startswith('tools/'):
                continue
            after = git('show', f'{c}:{f}')
            before = git('show', f'{c}^:{f}') if status != 'A' else ''
            new += sorted(kerneldoc_warnings(after, f, tmp) - kerneldoc_warnings(before, f, tmp))
        tap.append((not new, f'{name}: no new kernel-doc warning', '\n'.join(new)))
    # Every new file of the series has a MAINTAINERS entry.
    git('checkout', '-q', '--detach', commits[-1], cwd=wt)
    added = git('diff', '--name-only', '--diff-filter=A', 'base', commits[-1]).splitlines()
    orphans = []
    for f in added:
        r = run(['perl', 'scripts/get_maintainer.pl', '--nogit', '--nogit-fallback',
                 '--no-roles', '--no-rolestats', '-f', f], cwd=wt, check=False)
        if not r.stdout.strip():
            orphans.append(f)
    tap.append((not orphans, f'MAINTAINERS: an entry for each of the {len(added)} new files',
                '\n'.join(orphans)))
    # The UAPI header, as the kernel checks exported headers (usr/include/Makefile's
    # hdrtest: self-contained in C90 and C++98, included twice, headers_check.pl).
    r = run(['make', '-C', wt, f'O={build}', 'LLVM=1', f'-j{args.jobs}', 'headers'], check=False)
    out = r.stdout + r.stderr
    if r.returncode == 0:
        inc = f'{build}/usr/include'
        hdr = f'{inc}/linux/hibsnap.h'
        flags = ['-fsyntax-only', '-Werror', '-Wall', '-nostdinc', '-I', inc]
        for cmd in (['clang', '-std=c90', '-Wmissing-prototypes', '-Wstrict-prototypes', *flags,
                     '-x', 'c', '/dev/null', '-include', hdr, '-include', hdr],
                    ['clang', '-std=c++98', *flags, '-x', 'c++', '/dev/null', '-include', hdr],
                    ['perl', f'{wt}/usr/include/headers_check.pl', inc, hdr]):
            r = run(cmd, check=False)
            out += r.stdout + r.stderr
            if r.returncode:
                break
    tap.append((r.returncode == 0,
                'include/uapi/linux/hibsnap.h: UAPI header test (C90, C++98, headers_check.pl)',
                out[-2000:] if r.returncode else ''))
    # The documentation builds without a warning (docutils).
    r = run(['rst2html', '--halt=warning', '--report=warning',
             f'{wt}/Documentation/power/hibsnap.rst', '/dev/null'], check=False)
    tap.append((r.returncode == 0, 'Documentation/power/hibsnap.rst: docutils, no warning',
                r.stderr))
    # The man pages render without a warning.
    for page in sorted(glob.glob(f'{REPO}/tools/power/hibsnap/man/*.[0-9]')):
        r = run(['groff', '-man', '-ww', '-z', '-K', 'utf8', page], check=False)
        rel = os.path.relpath(page, REPO)
        tap.append((r.returncode == 0 and not r.stderr.strip(), f'{rel}: groff -man -ww, no warning',
                    r.stderr))
    with open(f'{args.tap}', 'w') as f:
        f.write(f'TAP version 13\n1..{len(tap)}\n')
        for n, (ok, what, diag) in enumerate(tap, 1):
            f.write(f"{'ok' if ok else 'not ok'} {n} series: {what}\n")
            for l in diag.splitlines():
                f.write(f'# {l}\n')
    print(f"series: {sum(ok for ok, _, _ in tap)} of {len(tap)} checks passed")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest='cmd', required=True)
    sub.add_parser('assemble')
    f = sub.add_parser('format')
    f.add_argument('--out', required=True)
    c = sub.add_parser('check')
    c.add_argument('--out', required=True, help='the formatted series')
    c.add_argument('--build', required=True, help='the O= directory of the per-patch builds')
    c.add_argument('--tap', required=True)
    c.add_argument('--jobs', default='2')
    a = ap.parse_args()
    {'assemble': assemble, 'format': format_series, 'check': check}[a.cmd](a)


if __name__ == '__main__':
    main()
