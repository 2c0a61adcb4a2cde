"""bench/peak_rss.py - the peak resident memory of this process, for the bench's PyTorch scripts
(torch_*_latency.py): VmHWM of this address space, in MB, NaN where /proc has none. ru_maxrss
would also count a parent's peak, which Linux carries across exec."""


def peak_rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
