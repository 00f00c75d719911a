"""Difficulty proxy: tiny ST-GCN, subject-disjoint split, on synthetic clips (no store)."""
import sys, time, numpy as np, torch, dataclasses
from piumr_skel.synth import SynthConfig, generate_clips
from piumr_skel.layouts import get_layout, assemble
from piumr_skel.transforms import normalize_clip
from piumr_skel.models import create_backbone
dev = "cuda" if torch.cuda.is_available() else "cpu"
kw = eval("dict(" + (sys.argv[1] if len(sys.argv) > 1 else "") + ")"); EPOCHS = kw.pop("epochs", 30)
cfg = dataclasses.replace(SynthConfig(), **kw)
L = get_layout("mp_holistic")
t0 = time.time()
X, Y, S = [], [], []
for c in generate_clips(cfg, 0):
    a = assemble(L, c.parts, cfg.width, cfg.height)
    a = normalize_clip(a, L)
    idx = np.linspace(0, len(a) - 1, 48).round().astype(int)
    X.append(a[idx]); Y.append(c.label); S.append(int(c.subject))
X = torch.tensor(np.stack(X)).permute(0, 3, 1, 2).float().to(dev); Y = torch.tensor(Y).to(dev); S = np.array(S)
print("gen", time.time() - t0, X.shape)
ntr = int(cfg.num_subjects * 0.75)
tr = torch.tensor(S <= ntr).to(dev); te = ~tr
g = torch.Generator().manual_seed(0); torch.manual_seed(0)
m = create_backbone("stgcn", in_channels=3, num_classes=52, layout=L, base_channels=16, num_blocks=6).to(dev)
opt = torch.optim.AdamW(m.parameters(), 2e-3, weight_decay=0.01)
xtr, ytr = X[tr], Y[tr]
E = EPOCHS
def acc(x, y):
    m.eval()
    with torch.no_grad():
        p = torch.cat([m.forward_head(m.forward_features(x[i:i+128])).argmax(1) for i in range(0, len(x), 128)])
    m.train(); return (p == y).float().mean().item(), p
for ep in range(E):
    perm = torch.randperm(len(xtr), generator=g).to(dev)
    for i in range(0, len(perm), 32):
        b = perm[i:i+32]
        loss = torch.nn.functional.cross_entropy(m.forward_head(m.forward_features(xtr[b])), ytr[b])
        opt.zero_grad(); loss.backward(); opt.step()
    if ep % 5 == 4 or ep == E - 1:
        a_tr, _ = acc(xtr, ytr); a_te, p = acc(X[te], Y[te])
        print(ep, round(loss.item(), 3), "train", round(a_tr, 3), "test", round(a_te, 3), round(time.time() - t0), flush=True)
yt = Y[te].cpu().numpy(); pt = p.cpu().numpy(); st = S[te.cpu().numpy()]
print("per-subject test acc", [round(float((pt[st == s] == yt[st == s]).mean()), 2) for s in np.unique(st)])
from collections import Counter
print("per-class test acc", {int(c): round(float((pt[yt == c] == c).mean()), 2) for c in np.unique(yt)})
print("confusions", Counter((int(a), int(b)) for a, b in zip(yt, pt) if a != b).most_common(10))
