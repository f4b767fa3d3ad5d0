"""Compare JSON files value for value: every number and string at the same place.

    python scripts/rpi/json_diff.py A1.json B1.json [A2.json B2.json ...] [--json OUT]

Prints, per pair, how many leaf values differ (numbers compared exactly) and the largest
difference of the keypoint coordinates and scores; a structural mismatch (another number of
people, keys) counts every value of the mismatched part. Exit 1 if anything differs.
"""
import argparse
import json
import sys


def leaves(x, path=""):
    if isinstance(x, dict):
        for k in sorted(x):
            yield from leaves(x[k], path + "/" + str(k))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from leaves(v, "%s[%d]" % (path, i))
    else:
        yield path, x


def diff(a, b):
    la, lb = dict(leaves(a)), dict(leaves(b))
    keys = set(la) | set(lb)
    n_diff, max_num = 0, 0.0
    for k in keys:
        va, vb = la.get(k, None), lb.get(k, None)
        if va != vb or type(va) is not type(vb):
            n_diff += 1
            if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and not isinstance(va, bool):
                max_num = max(max_num, abs(float(va) - float(vb)))
    return len(keys), n_diff, max_num


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--json")
    a = p.parse_args()
    if len(a.files) % 2:
        sys.exit("json_diff.py: give files in pairs")
    tot = {"values": 0, "differ": 0, "max_abs_diff": 0.0, "files": []}
    for fa, fb in zip(a.files[::2], a.files[1::2]):
        n, d, m = diff(json.load(open(fa)), json.load(open(fb)))
        print("  %-40s %6d of %6d values differ, max |diff| %g" % (fb.split("/")[-1], d, n, m))
        tot["values"] += n
        tot["differ"] += d
        tot["max_abs_diff"] = max(tot["max_abs_diff"], m)
        tot["files"].append({"a": fa, "b": fb, "values": n, "differ": d, "max_abs_diff": m})
    if a.json:
        from edgepose.files import write_json       # the x86 venv's edgepose (scripts/rpi_emulated.sh)

        write_json(a.json, tot)
    return 1 if tot["differ"] else 0


if __name__ == "__main__":
    sys.exit(main())
