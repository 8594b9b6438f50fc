"""Processes below a given one, from /proc. Tests that signal one rank of their own mpirun job find it here:
other tests run the same binary and model in parallel (ctest -j), so a match by name alone can hit theirs."""
import os


def descendants(root):
    """Pids of every process below `root`."""
    parent = {}
    for pid in os.listdir("/proc"):
        try:
            stat = open(f"/proc/{pid}/stat").read()
            parent[int(pid)] = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p not in found}
        found |= frontier
    return found
