# The paper's target: ClipCap prefix embeddings. OpenAI's CLIP ViT-B/32 (QuickGELU) embeds the
# frame, ClipCap's frozen MLP mapper turns the embedding into 10 prefix tokens of 768 (GPT-2's
# width), and concept k is aligned with prefix token k (so 10 concepts). Everything else is the
# PointNet2SASSG ScanNet-frames recipe.
#
#   python tools/train.py configs/pretrain/pointnet2-sassg_concept-distill-clipcap_8xb8-100e_scannet-frames.py \
#       --cfg-options model.teacher.pretrained=/path/to/ViT-B-32.pt \
#                     model.teacher.mapping.checkpoint=/path/to/coco_weights.pt
#
# `pretrained`: OpenAI's ViT-B-32.pt (the TorchScript release) or open_clip's
# `timm/vit_base_patch32_clip_224.openai` weights. `mapping.checkpoint`: a ClipCap model file
# as ClipCap saves it (`clip_project.*` + `gpt.*`; GPT-2 is ignored), e.g. its COCO or
# Conceptual Captions MLP model. Both are required (see docs/pretraining.md).
_base_ = ['./pointnet2-sassg_concept-distill_8xb8-100e_scannet-frames.py']

model = dict(
    teacher=dict(
        model_name='ViT-B-32-quickgelu',
        mapping=dict(
            _delete_=True,  # the base has mapping=None
            mapping_type='mlp',
            checkpoint=None,
            clip_model='ViT-B-32-quickgelu',  # what ClipCap's mappers were trained on
            num_prefix=10,
            prefix_dim=768,
            hidden_dim=None,  # ClipCap: 10 * 768 // 2 = 3840
            normalize_input=False)),  # ClipCap's MLP models read the raw embedding
    concept_extractor=dict(num_concepts=10))
