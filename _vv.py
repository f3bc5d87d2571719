import sys, time, torch, timm, netgraph, warnings
warnings.simplefilter("ignore")
from netgraph import flows
from netgraph.masks import prunable_parameter_names
name, size = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
m = timm.create_model(name)
for i in range(2):
    t=time.time(); g = netgraph.from_torch(m, (3,size,size)); print('trace', time.time()-t)
print(g.num_weights, sum(p['numel'] for p in g.offpath), sorted({p['role'] for p in g.offpath}))
print(sum(dict(m.named_parameters())[n].numel() for n in prunable_parameter_names(m)))
print(flows.log10_synflow_R(g))
