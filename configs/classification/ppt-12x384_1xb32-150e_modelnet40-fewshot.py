# ModelNet40 few-shot classification: one fold of an N-way K-shot setting (support = the
# fold's training objects, query = its 20 test objects per class; evaluation/fewshot.py).
# The protocol runs 10 folds per setting (5/10-way x 10/20-shot) and reports mean +- std:
#   for f in 0 1 ... 9: python tools/train.py <this config> --cfg-options fewshot_fold=$f \
#       train_dataloader.dataset.fold=$f val_dataloader.dataset.fold=$f \
#       --work-dir work_dirs/fewshot_5w10s/fold$f
# (n_way / k_shot likewise: train_dataloader.dataset.n_way=10 ... and model.num_classes=10).
_base_ = ['./ppt-12x384_1xb32-300e_modelnet40-1k.py']

n_way, k_shot, fold, seed = 5, 10, 0, 0
model = dict(num_classes=n_way)
_modelnet = dict(type='ModelNet40Dataset', data_root='data/modelnet40_normal_resampled/')
_fold = dict(type='FewShotObjectDataset', train_dataset=dict(_modelnet, split='train'),
             test_dataset=dict(_modelnet, split='test'), n_way=n_way, k_shot=k_shot, fold=fold,
             seed=seed, n_query=20)
train_dataloader = dict(dataset=dict(_fold, _delete_=True, split='support',
                                     pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(_fold, _delete_=True, split='query', test_mode=True,
                                   pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
# The peers' few-shot schedule: 150 epochs, 10 of warm-up.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=140, eta_min=1e-6, by_epoch=True, begin=10, end=150,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=150, val_interval=10)
