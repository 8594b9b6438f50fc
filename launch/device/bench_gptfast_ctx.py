# gpt-fast (PyTorch) decode ms/token at a short and a long context, random weights of a named shape: the
# 4k-context anchor of the README. Needs the git-ignored .anchor/ of /work/shared/GPU.md (gpt-fast's
# sources in .anchor/gptfast and its bench_gptfast.py, whose model set-up this reuses). Per-token GPU time
# from CUDA events recorded by generate()'s callback (no host sync), median over the last 47 tokens of a
# 64-token generation after a 5-token and a (4096 - 69)-token prompt, gpt-fast's block size raised to 4096.
# Usage: python3 launch/device/bench_gptfast_ctx.py 7B int4g32     (from the repository root)
import os, sys, json, statistics
import torch
anchor = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '.anchor')
name, mode = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(anchor, 'gptfast'))
import generate as G
from model import Transformer
# bench_gptfast.py up to its first model: imports, the int4 packing fallback, make_model()
__file__ = os.path.join(anchor, 'bench_gptfast.py')
exec(open(__file__).read().split('model = make_model()')[0])
def make(block):
    orig = Transformer.from_name
    def fn(n):
        m = orig(n); m.config.block_size = block; return m
    Transformer.from_name = fn
    try:
        return make_model()
    finally:
        Transformer.from_name = orig
model = make(4096)
G.decode_one_token = torch.compile(G.decode_one_token, mode="reduce-overhead", fullgraph=True)
out = dict(anchor='gpt-fast-ctx', model=name, mode=mode, gpu=torch.cuda.get_device_name())
new = 64
for P in (5, 4096 - new - 5):
    prompt = torch.randint(0, 1024, (P,), device='cuda', dtype=torch.int64)
    for rep in range(3):
        ev = []
        def cb(_):
            e = torch.cuda.Event(enable_timing=True); e.record(); ev.append(e)
        G.generate(model, prompt, new, batch_size=1, interactive=False, draft_model=None, callback=cb,
                   temperature=0.8, top_k=200)
        torch.cuda.synchronize()
        dts = [ev[i - 1].elapsed_time(ev[i]) for i in range(16, len(ev))]
    out[f'ms_ctx{P}'] = round(statistics.median(dts), 4)
    print(json.dumps(out), flush=True)
out['slower_pct'] = round(100 * (1 - out['ms_ctx5'] / out[f'ms_ctx{4096 - new - 5}']), 1)
print(json.dumps(out), flush=True)
