#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Stamps each line a guest writes to a serial port with the host's clock.

Usage: stamp.py FIFO RAW STAMPED

Reads FIFO (QEMU's "-chardev pipe" output, FIFO.out) until QEMU closes it;
writes each line as it came to RAW, and "SECONDS LINE" to STAMPED, SECONDS
being the host's time.time() when the line arrived. The guest's own clocks
stand still while hibernation suspends timekeeping; the host's do not.
STAMPED begins with "STAMP-OPEN" (QEMU opened the port: the machine was
switched on) and ends with "STAMP-EOF" (QEMU closed it: switched off).
"""
import sys
import time


def main():
    fifo, raw_path, stamped_path = sys.argv[1:4]
    with open(fifo, 'rb', buffering=0) as src, \
            open(raw_path, 'wb') as raw, open(stamped_path, 'wb') as stamped:
        stamped.write(b'%.6f STAMP-OPEN\n' % time.time())
        pending = b''
        while True:
            data = src.read(65536)
            if not data:
                break
            now = b'%.6f ' % time.time()
            pending += data
            *lines, pending = pending.split(b'\n')
            for line in lines:
                line = line.rstrip(b'\r')
                raw.write(line + b'\n')
                stamped.write(now + line + b'\n')
            raw.flush()
            stamped.flush()
        if pending:
            raw.write(pending + b'\n')
            stamped.write(b'%.6f ' % time.time() + pending + b'\n')
        stamped.write(b'%.6f STAMP-EOF\n' % time.time())


if __name__ == '__main__':
    main()
