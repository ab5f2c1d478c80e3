"""What the `#| gpu` cells read, made on the CPU: a Stable-Diffusion-2-shaped pipeline with random weights saved as a
model folder, and tiny datasets in the real formats laid out under one data folder as `06_data` describes:

    data/comvg/compositional_visual_genome.csv, comvg_train.csv     data/vg_images/<image_id>.jpg
    data/vqa/vqa_text_test.csv                                       data/coco/val2014/COCO_val2014_<id>.jpg
    data/refcocog/refs(umd).p, instances.json                        data/coco/train2014/COCO_train2014_<id>.jpg
    data/winoground/examples.jsonl, images/<name>.png

The images are shapes-world scenes (`discffusion.shapes`), so captions and hard negatives mean something.
"""
import json, pickle
from pathlib import Path
import torch
from discffusion.data import export_task
from discffusion.shapes import caption, make_split, render
from sd_fixtures import clip_tokenizer, sd_pipeline

def sd_model_folder(root) -> Path:
    "A random SD-2-shaped pipeline saved as a hub repository's fp16 variant (`*.fp16.safetensors`), as the cells load."
    folder = Path(root)/'sd2-random'
    sd_pipeline(Path(root)/'clip-tokenizer', '2').to(torch.float16).save_pretrained(folder, variant='fp16')
    return folder

def clip_model_folder(root, seed: int = 0) -> Path:
    "A tiny CLIP with random weights, patch 14 as ViT-L/14, and CLIP's real tokenizer, saved as a model folder."
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor
    tok = clip_tokenizer(Path(root)/'clip-tokenizer')
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=77, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    torch.manual_seed(seed)
    folder = Path(root)/'clip-random'
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    crop = dict(height=28, width=28)
    CLIPProcessor(image_processor=CLIPImageProcessorPil(size=dict(shortest_edge=28), crop_size=crop),
                  tokenizer=tok).save_pretrained(folder)
    return folder

def _move_images(src: Path, dst: Path):
    "Move every file of `src` into `dst` (the exporters write images beside their CSV; real layouts keep them apart)."
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir(): p.rename(dst/p.name)
    src.rmdir()

def comvg_files(data: Path, n_test: int = 2, n_train: int = 18):
    "ComVG's test and training CSVs (official names) in `data/comvg`, their images in `data/vg_images`."
    for split, n in (('test', n_test), ('train', n_train)):
        export_task('shapes-comvg', data/'comvg', split, n, fmt='comvg')
    _move_images(data/'comvg'/'images', data/'vg_images')

def vqa_files(data: Path, n: int = 1):
    "VQAv2-as-matching's test CSV in `data/vqa`, its COCO val2014 images in `data/coco/val2014`."
    export_task('shapes-vqa', data/'vqa', 'test', n, fmt='vqa')
    _move_images(data/'vqa'/'images', data/'coco'/'val2014')

def refcocog_files(data: Path, n_images: int = 12):
    "A refer-toolkit RefCOCOg folder (`refs(umd).p`, `instances.json`) and its COCO train2014 images."
    folder, images = data/'refcocog', data/'coco'/'train2014'
    folder.mkdir(parents=True, exist_ok=True); images.mkdir(parents=True, exist_ok=True)
    refs, coco_images, annotations = [], [], []
    for i, ex in enumerate(make_split('test', n_images, seed=1), 1):
        name = f'COCO_train2014_{i:012d}.jpg'
        ex.image.save(images/name, quality=95)
        coco_images.append(dict(id=i, file_name=name, height=ex.image.height, width=ex.image.width))
        annotations.append(dict(id=100 + i, image_id=i, bbox=[0.0, 0.0, 16.0, 32.0], category_id=1))
        texts = [ex.caption, f'the picture of {ex.caption}']
        refs.append(dict(ref_id=i, ann_id=100 + i, image_id=i, split='val', category_id=1,
                         sentences=[dict(raw=t, sent=t, tokens=t.split(), sent_id=10 * i + j)
                                    for j, t in enumerate(texts)]))
    with open(folder/'refs(umd).p', 'wb') as f: pickle.dump(refs, f)
    (folder/'instances.json').write_text(json.dumps(dict(images=coco_images, annotations=annotations, categories=[])))

def winoground_files(data: Path, n: int = 1):
    "Winoground's release layout: `examples.jsonl` and `images/`; each example a scene and its attribute swap."
    folder = data/'winoground'; (folder/'images').mkdir(parents=True, exist_ok=True)
    rows = []
    for i, ex in enumerate(make_split('test', n, seed=2)):
        scenes = [ex.scene, ex.negatives['attribute_swap']]
        for k, scene in enumerate(scenes): render(scene, size=32).save(folder/'images'/f'ex_{i}_{k}.png')
        rows.append(dict(id=i, image_0=f'ex_{i}_0', image_1=f'ex_{i}_1', caption_0=caption(scenes[0]),
                         caption_1=caption(scenes[1]), tag='Object', secondary_tag='', num_main_preds=1,
                         collapsed_tag='Object'))
    (folder/'examples.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))

def data_folder(root) -> Path:
    "Every dataset the `#| gpu` cells read, in the real formats, under `root/data`."
    data = Path(root)/'data'
    for write in (comvg_files, vqa_files, refcocog_files, winoground_files): write(data)
    return data
