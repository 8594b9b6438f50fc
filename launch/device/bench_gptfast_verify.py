# gpt-fast (PyTorch) beside gf_engine_bench's prefill and verify figures, random weights of a named shape:
# a 1024-token prefill (gpt-fast's prefill(), eager, as its generate.py runs it without --compile_prefill),
# and one forward of 8 tokens at position 1024 (its speculative verify: model_forward compiled
# reduce-overhead, as generate.py does with a draft) against one decode step there (decode_one_token,
# compiled the same way). GPU time from CUDA events, median of 20 after warm-up. Needs the git-ignored
# .anchor/ of /work/shared/GPU.md (gpt-fast's sources and its bench_gptfast.py, whose model set-up this reuses).
# Usage: python3 launch/device/bench_gptfast_verify.py 7B int4g32     (from the repository root)
import os, sys, json, statistics
import torch
anchor = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '.anchor')
name, mode = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(anchor, 'gptfast'))
import generate as G
# bench_gptfast.py up to its first model: imports, the int4 packing fallback, make_model()
__file__ = os.path.join(anchor, 'bench_gptfast.py')
exec(open(__file__).read().split('model = make_model()')[0])
model = make_model()
with torch.device('cuda'):
    model.setup_caches(max_batch_size=1, max_seq_length=2048)
sampling = dict(temperature=0.8, top_k=200)


def gpu_ms(fn, n=20, warm=3):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


out = dict(anchor='gpt-fast-verify', model=name, mode=mode, gpu=torch.cuda.get_device_name())
x = torch.randint(0, 1024, (1, 1024), device='cuda', dtype=torch.int64)
pos = torch.arange(1024, device='cuda')
with torch.no_grad():
    out['prefill1024_ms'] = round(gpu_ms(lambda: G.prefill(model, x, pos, **sampling), n=5), 3)
    out['prefill1024_tok_s'] = round(1024 / out['prefill1024_ms'] * 1e3, 1)
    print(json.dumps(out), flush=True)
    decode = torch.compile(G.decode_one_token, mode="reduce-overhead", fullgraph=True)
    verify = torch.compile(G.model_forward, mode="reduce-overhead", fullgraph=True)
    x1, p1 = x[:, :1].clone(), torch.tensor([1024], device='cuda')
    x8, p8 = x[:, :8].clone(), torch.arange(1024, 1032, device='cuda')
    with torch.backends.cuda.sdp_kernel(enable_flash=False, enable_mem_efficient=False, enable_math=True):
        out['decode_ms_at1024'] = round(gpu_ms(lambda: decode(model, x1, p1, **sampling)), 4)
    out['verify8_ms_at1024'] = round(gpu_ms(lambda: verify(model, x8, p8)), 4)
    out['verify8_over_decode'] = round(out['verify8_ms_at1024'] / out['decode_ms_at1024'], 3)
print(json.dumps(out), flush=True)
