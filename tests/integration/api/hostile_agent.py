#!/usr/bin/python3
"""A compromised sbx-init: PID 1 of a sandbox speaking the agent protocol (docs/protocol.md)
to sbxd however it likes. Used as sbxd's --init by test_hostile_agent.py; the behaviour is
the MODE line, rewritten per test. It accepts on fd 3 and answers each connection in a
thread of its own."""
import os
import socket
import struct
import threading
import time

MODE = "honest"

HELLO, EXEC_START, EXEC_STARTED, EXEC_STDOUT, EXEC_EXIT, ERROR = 1, 2, 5, 6, 8, 9
PROC_OUTPUT, PROC_LIST, PROC_INFO, DONE = 12, 17, 18, 19
FILE_READ, FILE_DATA, FILE_OP, FILE_INFO = 20, 22, 23, 24


def tlv(tag, value):
    if isinstance(value, int):
        value = struct.pack(">Q" if tag in U64 else ">I", value)
    return struct.pack(">HI", tag, len(value)) + value


U64 = {6, 7, 8, 9, 10, 11, 12, 13, 26, 27, 31, 32, 33, 35, 41, 42}


def frame(ftype, fid, payload=b""):
    return struct.pack(">IBI", len(payload), ftype, fid) + payload


def read_frame(c, buf):
    while len(buf) < 9 or len(buf) < 9 + struct.unpack(">I", buf[:4])[0]:
        b = c.recv(65536)
        if not b:
            return None, buf
        buf += b
    n, t, i = struct.unpack(">IBI", buf[:9])
    return (t, i, buf[9:9 + n]), buf[9 + n:]


def proc_info(n):
    return (tlv(1, n) + tlv(2, 1000 + n) + tlv(3, struct.pack("B", 1)) + tlv(10, 0) + tlv(11, 0)
            + tlv(34, b"x" * 1000))


def serve(c):
    hello = tlv(1, 99 if MODE == "bad_version" else 1) + tlv(2, b"sbx-init")
    if MODE == "no_hello":
        time.sleep(3600)
        return
    c.sendall(frame(HELLO, 0, hello))
    buf = b""
    while True:
        f, buf = read_frame(c, buf)
        if f is None:
            return
        t, i, p = f
        if t == HELLO:
            continue
        if MODE == "flood":
            # Never-ending answers: sbxd must stop taking them.
            if t == PROC_LIST:
                while True:
                    c.sendall(frame(PROC_INFO, i, proc_info(7)) * 64)
            if t == FILE_OP:
                info = tlv(25, 0o100644) + tlv(26, 1) + tlv(24, b"f" * 200)
                while True:
                    c.sendall(frame(FILE_INFO, i, info) * 64)
            if t in (PROC_OUTPUT, FILE_READ):
                chunk = frame(EXEC_STDOUT if t == PROC_OUTPUT else FILE_DATA, i, b"y" * 65536)
                while True:
                    c.sendall(chunk)
        if MODE == "huge_len":
            c.sendall(struct.pack(">IBI", 0xFFFFFFFF, FILE_INFO, i))
            time.sleep(3600)
        if MODE == "truncated":
            c.sendall(struct.pack(">IBI", 100, FILE_INFO, i) + b"x" * 10)
            c.close()
            return
        if MODE == "silent":
            continue
        if MODE == "absurd":
            if t == FILE_OP:
                info = (tlv(25, 0xFFFFFFFF) + tlv(26, 2**64 - 1) + tlv(27, 2**64 - 1)
                        + tlv(38, 0xFFFFFFFF) + tlv(39, 0xFFFFFFFF) + tlv(37, b"\xff\xfe\xc0")
                        + tlv(24, b"\xff\xfe"))
                c.sendall(frame(FILE_INFO, i, info) + frame(FILE_INFO, i, info)
                          + frame(DONE, i, tlv(42, 2**64 - 1)))
            elif t == PROC_LIST:
                info = (tlv(1, 0xFFFFFFFF) + tlv(2, 0xFFFFFFFF) + tlv(3, b"\x07")
                        + tlv(4, 0x80000000) + tlv(34, b"\xff\x80bad") + tlv(21, b"\xc3")
                        + tlv(10, 2**64 - 1) + tlv(35, 2**64 - 1) + tlv(31, 2**64 - 1))
                c.sendall(frame(PROC_INFO, i, info) + frame(PROC_INFO, 12345, info)
                          + frame(DONE, i))
            elif t == PROC_OUTPUT:
                info = (tlv(1, 1) + tlv(6, 2**64 - 1) + tlv(7, 5) + tlv(8, 0) + tlv(9, 0)
                        + tlv(10, 3) + tlv(11, 2**64 - 1))
                c.sendall(frame(EXEC_STDOUT, i, b"\xff\x00abc") + frame(EXEC_STDOUT, 999, b"zz")
                          + frame(PROC_INFO, i, info))
            elif t == FILE_READ:
                c.sendall(frame(FILE_INFO, i, tlv(25, 0o100644) + tlv(26, 5))
                          + frame(FILE_DATA, 4242, b"other") + frame(FILE_DATA, i, b"a\x00\xff")
                          + frame(DONE, i, tlv(26, 2**64 - 1)))
            elif t == EXEC_START:
                exit_rec = tlv(1, 0) + tlv(3, b"\xff" * 8)  # DURATION_US: u64
                c.sendall(frame(EXEC_STARTED, i, struct.pack(">I", 42))
                          + frame(EXEC_STDOUT, i + 1000, b"not yours")
                          + frame(EXEC_EXIT, i + 1000, exit_rec)
                          + frame(EXEC_STDOUT, i, b"\xff\x00mine") + frame(EXEC_EXIT, i, exit_rec))
            continue
        c.sendall(frame(ERROR, i, tlv(1, 3) + tlv(2, b"no")))


def main():
    ls = socket.socket(fileno=3)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


main()
