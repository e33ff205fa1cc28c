"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): self and inclusive time.

``python -m bench.profile_summary PROFILE.txt [--top 25] [--filter asyncevents]``
"""

from __future__ import annotations

import argparse
import collections
import re

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str, keep_line: bool = False) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "lib/python3.11/", "/src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    where = f"{path}:{m.group('line')}" if keep_line and m.group("line") else path
    return f"{m.group('func')} ({where})"


def summarise(path: str, top: int, needle: str) -> str:
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as fh:
        for line in fh:
            line = line.rstrip()
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            n = int(count)
            frames = [f for f in stack.split(";") if not f.startswith(("thread", "process"))]
            total += n
            if not frames:
                continue
            self_t[_short(frames[-1], keep_line=True)] += n
            seen = set()
            for f in frames:
                s = _short(f)
                if s not in seen:
                    seen.add(s)
                    incl[s] += n
    out = [f"{total} samples (non-idle)", "", f"top {top} self time:"]
    for name, n in self_t.most_common(top):
        out.append(f"  {100 * n / total:5.1f}%  {name}")
    out += ["", f"top {top} inclusive time in frames matching {needle!r}:"]
    shown = 0
    for name, n in incl.most_common():
        if needle in name:
            out.append(f"  {100 * n / total:5.1f}%  {name}")
            shown += 1
            if shown >= top:
                break
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--filter", default="asyncevents")
    args = parser.parse_args()
    print(summarise(args.profile, args.top, args.filter))


if __name__ == "__main__":
    main()
