"""`training.Learner` across processes: gradients are averaged over processes before each optimizer step."""
import json, os, subprocess, sys
from pathlib import Path

SCRIPT = '''
import json, sys, torch
from pathlib import Path
from discffusion.training import Learner
X = torch.linspace(-1, 1, 96).view(32, 3); Y = X @ torch.tensor([1., -2., 3.])
torch.manual_seed(0); model = torch.nn.Linear(3, 1)
def loss(gen, i):
    rows = torch.arange(i * 4, i * 4 + 4) % 32  # micro-batch i: rows chosen by its index
    return torch.nn.functional.mse_loss(model(X[rows]).squeeze(1), Y[rows])
learn = Learner(model, loss, 5, lr=0.05, accumulate=int(sys.argv[2]), progress=False)
learn.fit()
acc = learn.accelerator
out = dict(process=acc.process_index, processes=acc.num_processes, weight=model.weight.tolist(),
           bias=model.bias.tolist())
Path(f'{sys.argv[1]}{acc.process_index}').write_text(json.dumps(out))
'''

def test_two_processes_equal_one_accumulating(tmp_path):
    "torchrun with 2 CPU (gloo) processes, one micro-batch each per step = 1 process accumulating 2 micro-batches."
    (tmp_path/'run.py').write_text(SCRIPT)
    env = os.environ | {'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(Path(__file__).resolve().parents[1])}
    run = [sys.executable, str(tmp_path/'run.py')]
    subprocess.run(run + [str(tmp_path/'single'), '2'], check=True, env=env, timeout=300)
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2']
    subprocess.run(torchrun + run[1:] + [str(tmp_path/'multi'), '1'], check=True, env=env, timeout=300,
                   capture_output=True)
    single = json.loads((tmp_path/'single0').read_text())
    multi = [json.loads((tmp_path/f'multi{i}').read_text()) for i in range(2)]
    assert (single['processes'], [m['process'] for m in multi], multi[0]['processes']) == (1, [0, 1], 2)
    assert multi[0]['weight'] == multi[1]['weight'] == single['weight']
    assert multi[0]['bias'] == multi[1]['bias'] == single['bias']
