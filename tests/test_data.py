"Dataset readers on fixtures written in the exact published formats, with generated images."
import csv, hashlib, json, pickle, warnings
from pathlib import Path
import numpy as np, pytest
from PIL import Image
from discffusion.data import (Record, Records, Crop, open_image, comvg_records, vqa_records, refcocog_records, winoground_records,
                              matching_records, shapes_records, kshot_split, subsample, load_records, coco_image, COMVG_COLUMNS,
                              VQA_COLUMNS, NEGATIVE_TYPES, DATASETS, SHAPES_TASKS, WINOGROUND_COLUMNS, draw_shots, load_shots,
                              export_task)

def img(path, color=(0, 0, 0), size=(16, 12)):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', size, color).save(path)
    return Path(path)

def write_csv(path, header, rows):
    with open(path, 'w', newline='') as f:
        w = csv.writer(f); w.writerow(header); w.writerows(rows)
    return Path(path)

# ComVG ---------------------------------------------------------------------------------------------------------

COMVG_ROWS = [[1, 'a man is sitting at a table', 'man,sit,table', "('dog', 'sit', 'table')", 2358258, 2357994, 'subject'],
              [2, 'a woman rides a horse', 'woman,ride,horse', "('woman', 'ride', 'bike')", 11, 12, 'object'],
              [3, 'a boy holds a kite', 'boy,hold,kite', "('boy', 'fly', 'kite')", 13, 11, 'verb']]

@pytest.fixture
def comvg(tmp_path):
    for _, _, _, _, a, b, _ in COMVG_ROWS: img(tmp_path/'vg'/f'{a}.jpg'); img(tmp_path/'vg'/f'{b}.jpg')
    return write_csv(tmp_path/'comvg.csv', COMVG_COLUMNS, COMVG_ROWS), tmp_path/'vg'

def test_comvg_exact_format(comvg):
    text = comvg[0].read_text().splitlines()
    assert text[0] == 'id,sentence,pos_triplet,neg_triplet,pos_image_id,neg_image_id,neg_value'
    assert text[1] == '1,a man is sitting at a table,"man,sit,table","(\'dog\', \'sit\', \'table\')",2358258,2357994,subject'
    recs = comvg_records(*comvg)
    assert isinstance(recs, Records) and recs.name == 'ComVG' and recs.skipped == 0
    assert [r.subset for r in recs] == ['subject', 'object', 'verb']
    r = recs[0]
    assert (r.kind, r.label, r.query) == ('image', 0, 'a man is sitting at a table')
    assert [p.name for p in r.candidates] == ['2358258.jpg', '2357994.jpg']
    assert (r.texts, r.images) == (['a man is sitting at a table'], r.candidates)

def test_comvg_missing_column_named(tmp_path):
    path = write_csv(tmp_path/'c.csv', [c for c in COMVG_COLUMNS if c != 'neg_value'], [r[:-1] for r in COMVG_ROWS])
    with pytest.raises(ValueError, match=r"ComVG CSV: .*c\.csv lacks column\(s\) \['neg_value'\]"): comvg_records(path, tmp_path)

def test_comvg_bad_values_named(tmp_path, comvg):
    path = write_csv(tmp_path/'c.csv', COMVG_COLUMNS, [COMVG_ROWS[0][:-1] + ['predicate']])
    with pytest.raises(ValueError, match=r"line 2: neg_value 'predicate' is not one of"): comvg_records(path, comvg[1])
    path = write_csv(tmp_path/'c.csv', COMVG_COLUMNS, [[1, 'a man', 'x', 'y', '', 2, 'subject']])
    with pytest.raises(ValueError, match='line 2: empty pos_image_id'): comvg_records(path, comvg[1])

def test_comvg_training_rows_and_odd_ids(tmp_path, comvg):
    path = write_csv(tmp_path/'t.csv', ['sentence', 'pos_image_id', 'neg_image_id', 'neg_value'],
                     [['a man', 2358258, 2357994, ''], ['a boy', 13, 11, 'verb']])
    assert [r.subset for r in comvg_records(path, comvg[1], split='train')] == ['all', 'verb']
    path = write_csv(tmp_path/'c.csv', COMVG_COLUMNS, [[1, 'a man', 'x', 'y', 2358258, 2357994, '']])
    with pytest.raises(ValueError, match="c.csv line 2: neg_value '' is not one of"): comvg_records(path, comvg[1])
    path = write_csv(tmp_path/'c.csv', COMVG_COLUMNS, [['1\n2', 'a man', 'x', 'y', 404, 2357994, 'subject']])
    with pytest.raises(FileNotFoundError, match=r"404\.jpg' of ComVG id 1 2 \(c\.csv line 3\) is missing") as e:
        comvg_records(path, comvg[1])
    assert '\n' not in str(e.value)

def test_comvg_missing_files(tmp_path, comvg):
    with pytest.raises(FileNotFoundError, match='ComVG CSV: no file or folder at .*nope.csv'): comvg_records(tmp_path/'nope.csv', comvg[1])
    with pytest.raises(FileNotFoundError, match='ComVG image_root: no file or folder'): comvg_records(comvg[0], tmp_path/'no_images')
    (comvg[1]/'11.jpg').unlink()
    with pytest.raises(FileNotFoundError, match=r"11\.jpg' of ComVG id 2 \(comvg\.csv line 3\) is missing"):
        comvg_records(*comvg)
    with pytest.warns(UserWarning, match=r'ComVG: skipped 2 of 3 records with a missing image'):
        recs = comvg_records(*comvg, skip_missing=True)
    assert (len(recs), recs.skipped, [r.subset for r in recs]) == (1, 2, ['subject'])
    assert all(m.endswith('11.jpg') for m in recs.missing)

# VQA -----------------------------------------------------------------------------------------------------------

def vqa_row(i):
    return [f'what is on the table? apple {i}', i] + [f'what is on the table? thing {j}' for j in range(1, 10)]

def test_vqa_exact_format_and_image_names(tmp_path):
    path = write_csv(tmp_path/'vqa.csv', VQA_COLUMNS, [vqa_row(i) for i in (1, 2, 3)])
    assert path.read_text().splitlines()[0] == 'sentence,pos_image_id,' + ','.join(f'neg_sentence_{i}' for i in range(1, 10))
    img(tmp_path/'coco'/'COCO_train2014_000000000001.jpg'); img(tmp_path/'coco'/'000000000002.jpg'); img(tmp_path/'coco'/'3.jpg')
    recs = vqa_records(path, tmp_path/'coco')
    assert [r.query.name for r in recs] == ['COCO_train2014_000000000001.jpg', '000000000002.jpg', '3.jpg']
    assert all(r.kind == 'text' and len(r.candidates) == 10 and r.label == 0 and r.subset == 'vqa' for r in recs)
    assert recs[0].candidates[0] == 'what is on the table? apple 1'
    img(tmp_path/'val'/'COCO_val2014_000000000001.jpg')
    one = write_csv(tmp_path/'one.csv', VQA_COLUMNS, [vqa_row(1)])
    assert vqa_records(one, tmp_path/'val', prefix='COCO_val2014_')[0].query.name == 'COCO_val2014_000000000001.jpg'

def test_vqa_validation(tmp_path):
    img(tmp_path/'coco'/'1.jpg')
    path = write_csv(tmp_path/'v.csv', VQA_COLUMNS[:-1], [vqa_row(1)[:-1]])
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['neg_sentence_9'\]"): vqa_records(path, tmp_path/'coco')
    row = vqa_row(1); row[5] = ''
    path = write_csv(tmp_path/'v.csv', VQA_COLUMNS, [row])
    with pytest.raises(ValueError, match=r"VQA CSV v\.csv line 2: empty \['neg_sentence_4'\]"):
        vqa_records(path, tmp_path/'coco')
    path = write_csv(tmp_path/'v.csv', VQA_COLUMNS, [vqa_row(1), vqa_row(5)])
    with pytest.raises(FileNotFoundError, match=r"COCO_val2014_000000000005\.jpg' of VQA v\.csv line 3 is missing"):
        vqa_records(path, tmp_path/'coco')
    with pytest.warns(UserWarning, match='skipped 1 of 2'): assert len(vqa_records(path, tmp_path/'coco', skip_missing=True)) == 1

def test_coco_image_prefers_2014_name(tmp_path):
    assert coco_image(tmp_path, 7).name == 'COCO_train2014_000000000007.jpg'  # reported when nothing exists
    img(tmp_path/'7.jpg'); img(tmp_path/'COCO_train2014_000000000007.jpg')
    assert coco_image(tmp_path, '7').name == 'COCO_train2014_000000000007.jpg'

# RefCOCOg ------------------------------------------------------------------------------------------------------

def write_refcocog(folder, split_by='umd', n=6):
    folder.mkdir(parents=True, exist_ok=True)
    images = [{'id': 1000 + i, 'file_name': f'COCO_train2014_{1000 + i:012d}.jpg', 'height': 40, 'width': 60} for i in range(n)]
    anns = [{'id': 50 + i, 'image_id': 1000 + i, 'bbox': [10.0, 5.0, 20.5, 30.0], 'category_id': 1, 'area': 1, 'iscrowd': 0} for i in range(n)]
    refs = [{'ref_id': i, 'ann_id': 50 + i, 'image_id': 1000 + i, 'split': ['train', 'val', 'test'][i % 3], 'category_id': 1,
             'file_name': f'COCO_train2014_{1000 + i:012d}_{50 + i}.jpg',
             'sentences': [{'sent': f'object {i} sentence {j}', 'raw': f'Object {i} sentence {j}.', 'tokens': ['object'], 'sent_id': 10 * i + j} for j in range(2)]}
            for i in range(n)]
    with open(folder/f'refs({split_by}).p', 'wb') as f: pickle.dump(refs, f, protocol=2)
    (folder/'instances.json').write_text(json.dumps({'images': images, 'annotations': anns, 'categories': [{'id': 1, 'name': 'x'}]}))
    for im in images: img(folder.parent/'train2014'/im['file_name'], (im['id'] % 255, 0, 0), (60, 40))
    return folder, folder.parent/'train2014'

def test_refcocog_protocol(tmp_path):
    root, coco = write_refcocog(tmp_path/'refcocog', n=12)
    recs = refcocog_records(root, coco, refs_split='val', n_negatives=5, seed=3)
    val_refs = [i for i in range(12) if i % 3 == 1]
    assert len(recs) == 2 * len(val_refs) and {r.group for r in recs} == {str(1000 + i) for i in val_refs}
    for r in recs:
        i = int(r.candidates[0].split()[1])
        assert r.kind == 'text' and r.label == 0 and len(r.candidates) == 6 and len(set(r.candidates)) == 6
        assert r.candidates[0] == f'Object {i} sentence {r.candidates[0].split()[3]}'  # `raw`
        assert r.query.name == f'COCO_train2014_{1000 + i:012d}.jpg'
        assert all(int(c.split()[1]) != i for c in r.candidates[1:])  # expressions about other images
    again = refcocog_records(root / 'refs(umd).p', coco, refs_split='val', n_negatives=5, seed=3)
    assert [r.candidates for r in again] == [r.candidates for r in recs]
    other = refcocog_records(root, coco, refs_split='val', n_negatives=5, seed=4)
    assert [r.candidates for r in other] != [r.candidates for r in recs]
    crop = refcocog_records(root, coco, refs_split='val', n_negatives=5, crop=True)[0].query
    assert isinstance(crop, Crop) and open_image(crop).size == (20, 30)

def test_refcocog_official_partition(tmp_path):
    "custom_datasets.py lines 265-287: the first 5 % of the expressions, in the pickle's order, train; the rest test."
    root, coco = write_refcocog(tmp_path/'refcocog', n=30)  # 60 expressions: 3 train, 57 test
    train, test = refcocog_records(root, coco, split='train'), refcocog_records(root, coco)
    assert [r.candidates[0] for r in train] == ['Object 0 sentence 0.', 'Object 0 sentence 1.', 'Object 1 sentence 0.']
    assert len(test) == 57 and test[0].candidates[0] == 'Object 1 sentence 1.'
    assert len(train[0].candidates) == 10
    with pytest.raises(ValueError, match="pass refs_split='val'"): refcocog_records(root, coco, split='val')

def test_refcocog_google_and_errors(tmp_path):
    root, coco = write_refcocog(tmp_path/'refcocog', split_by='google', n=12)
    assert len(refcocog_records(root, coco, split='test', split_by='google', refs_split='train', n_negatives=3)) == 8
    with pytest.raises(FileNotFoundError, match=r'refs\(umd\)\.p: no file'): refcocog_records(root, coco)
    with pytest.raises(ValueError, match="RefCOCOg: no references of split 'testB'"):
        refcocog_records(root, coco, refs_split='testB', split_by='google')
    (tmp_path/'refcocog'/'instances.json').unlink()
    with pytest.raises(FileNotFoundError, match='RefCOCOg instances.json'): refcocog_records(root, coco, split_by='google')

def test_refcocog_missing_image(tmp_path):
    root, coco = write_refcocog(tmp_path/'refcocog', n=12)
    (coco/'COCO_train2014_000000001001.jpg').unlink()
    with pytest.raises(FileNotFoundError, match=r"000000001001\.jpg' of ref 1 of refs\(umd\)\.p is missing"):
        refcocog_records(root, coco, n_negatives=3)
    with pytest.warns(UserWarning, match='skipped 2 of 23'):
        assert refcocog_records(root, coco, n_negatives=3, skip_missing=True).skipped == 2

def test_refcocog_malformed_files(tmp_path):
    root, coco = write_refcocog(tmp_path/'refcocog', n=4)
    (root/'refs(umd).p').write_bytes(b'not a pickle')
    with pytest.raises(ValueError, match=r'refs\(umd\)\.p is not a readable pickle'): refcocog_records(root, coco)
    bad = [dict(ref_id=0, ann_id=1, image_id=2, split='val', sentences='x')]
    with open(root/'refs(umd).p', 'wb') as f: pickle.dump(bad, f)
    with pytest.raises(ValueError, match=r'reference 0 of .*`sentences` must be a list of dict'):
        refcocog_records(root, coco)
    write_refcocog(tmp_path/'refcocog', n=4); (root/'instances.json').write_text('[1, 2]')
    with pytest.raises(ValueError, match='holds a JSON list; expected an object'): refcocog_records(root, coco)

# Winoground ----------------------------------------------------------------------------------------------------

def write_winoground(folder, n=4):
    rows = [dict(id=i, image_0=f'ex_{i}_img_0', image_1=f'ex_{i}_img_1', caption_0=f'the cup is in front of the {i} bowls',
                 caption_1=f'the {i} bowls are in front of the cup', tag=['Object', 'Relation', 'Both'][i % 3],
                 secondary_tag='Symbolic', num_main_preds=1, collapsed_tag='Relation') for i in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder/'examples.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
    for r in rows: img(folder/'images'/f"{r['image_0']}.png", (10, 0, 0)); img(folder/'images'/f"{r['image_1']}.png", (20, 0, 0))
    return folder

def test_winoground_release_layout(tmp_path):
    folder = write_winoground(tmp_path/'wino')
    for path in (folder, folder/'examples.jsonl'):
        recs = winoground_records(path)
        assert len(recs) == 16 and recs.name == 'Winoground'
    g = [r for r in recs if r.group == '1']
    assert [(r.kind, r.label) for r in g] == [('image', 0), ('image', 1), ('text', 0), ('text', 1)]
    assert g[0].query == 'the cup is in front of the 1 bowls' and [p.name for p in g[0].candidates] == ['ex_1_img_0.png', 'ex_1_img_1.png']
    assert g[2].candidates == [g[0].query, g[1].query] and g[2].query == g[0].candidates[0]
    assert {r.subset for r in g} == {'Relation'}

def test_winoground_errors(tmp_path):
    folder = write_winoground(tmp_path/'wino')
    (folder/'images'/'ex_2_img_1.png').unlink()
    with pytest.raises(FileNotFoundError, match=r"ex_2_img_1\.png' of Winoground 2, caption_0 \(examples\.jsonl\) is missing"):
        winoground_records(folder)
    with pytest.warns(UserWarning, match='skipped 4 of 16'): recs = winoground_records(folder, skip_missing=True)
    assert len(recs) == 12 and '2' not in {r.group for r in recs}
    (folder/'examples.jsonl').write_text(json.dumps({'id': 0, 'image_0': 'a', 'image_1': 'b', 'caption_0': 'x'}) + '\n')
    with pytest.raises(ValueError, match=r"line 1 of .*examples.jsonl lacks column\(s\) \['caption_1', 'tag'\]"): winoground_records(folder)
    with pytest.raises(FileNotFoundError, match='Winoground path: no file or folder'): winoground_records(tmp_path/'missing')

# The generic format --------------------------------------------------------------------------------------------

def test_matching_csv_and_jsonl(tmp_path):
    for n in ('a.jpg', 'b.jpg', 'c.jpg'): img(tmp_path/'ims'/n)
    path = write_csv(tmp_path/'data.csv', ['id', 'image', 'text', 'negative_1', 'negative_2', 'negative_image_1', 'negative_image_2', 'subset'],
                     [['x', 'a.jpg', 'an apple', 'a banana', '', 'b.jpg', 'c.jpg', 'fruit'], ['y', 'b.jpg', 'a banana', 'an apple', 'a cherry', '', '', '']])
    recs = matching_records(path, image_root=tmp_path/'ims')
    assert [(r.kind, len(r.candidates), r.subset, r.group) for r in recs] == [('text', 2, 'fruit', 'x'), ('image', 3, 'fruit', 'x'), ('text', 3, 'all', 'y')]
    assert recs[1].query == 'an apple' and [p.name for p in recs[1].candidates] == ['a.jpg', 'b.jpg', 'c.jpg']
    (tmp_path/'ims'/'d.jsonl').write_text(json.dumps({'image': 'a.jpg', 'text': 'an apple', 'negative_images': ['b.jpg'], 'subset': 's'}) + '\n')
    r = matching_records(tmp_path/'ims'/'d.jsonl')[0]  # image paths relative to the file's folder by default
    assert (r.kind, r.candidates[1].name, r.subset) == ('image', 'b.jpg', 's')
    with pytest.raises(FileNotFoundError, match="a.jpg' of line 2 of data.csv is missing"): matching_records(path)
    (tmp_path/'d.txt').write_text('')
    with pytest.raises(ValueError, match='path: expected a .csv or .jsonl file'): matching_records(tmp_path/'d.txt')
    (tmp_path/'e.jsonl').write_text(json.dumps({'image': 'a.jpg', 'negatives': ['x']}) + '\n')
    with pytest.raises(ValueError, match=r"line 1 of e.jsonl: missing or empty \['text'\]"): matching_records(tmp_path/'e.jsonl')

# Shapes, splits, load_records ----------------------------------------------------------------------------------

def test_shapes_records_both_directions():
    t, i = shapes_records('test', 5, seed=1), shapes_records('test', 5, seed=1, direction='image')
    assert len(t) == len(i) == 25 and [r.subset for r in t[:5]] == list(NEGATIVE_TYPES)
    assert all(r.kind == 'text' and r.label == 0 and len(r.candidates) == 2 for r in t)
    assert all(r.kind == 'image' and isinstance(r.candidates[1], Image.Image) for r in i)
    assert [r.query for r in i] == [r.candidates[0] for r in t]
    assert len(shapes_records('test', 3, types=['relation_flip'])) == 3
    with pytest.raises(ValueError, match=r"types: unknown \['swap'\]"): shapes_records(types=['swap'])

def test_kshot_keeps_groups_and_is_seeded(tmp_path):
    recs = winoground_records(write_winoground(tmp_path/'wino', n=12))
    tr, te = kshot_split(recs, k=2, seed=0)
    assert {r.group for r in tr}.isdisjoint({r.group for r in te})
    assert all(sum(r.group == g for r in tr) == 4 for g in {r.group for r in tr})  # whole examples
    assert {s: len({r.group for r in tr if r.subset == s}) for s in ('Object', 'Relation', 'Both')} == {'Object': 2, 'Relation': 2, 'Both': 2}
    assert [r.id for r in kshot_split(recs, k=2, seed=0)[0]] == [r.id for r in tr]
    assert tr.name == 'Winoground-train' and len(tr) + len(te) == len(recs)

def test_subsample_and_load_dataset(tmp_path, comvg):
    recs = winoground_records(write_winoground(tmp_path/'wino', n=10))
    sub = subsample(recs, 3, seed=1)
    assert len(sub) == 12 and len({r.group for r in sub}) == 3 and sub == subsample(recs, 3, seed=1)
    assert [r.group for r in sub] == sorted([r.group for r in sub], key=int)  # file order kept
    assert subsample(recs, None) is recs and subsample(recs, 100) is recs
    assert len(load_records('comvg', *comvg, limit=2)) == 2
    assert len(load_records('winoground', tmp_path/'wino', limit=2)) == 8
    assert len(load_records('shapes', split='val', limit=2, types=['object_swap'])) == 2
    assert set(DATASETS) == {'comvg', 'vqa', 'refcocog', 'winoground', 'shapes', 'csv', 'jsonl', *SHAPES_TASKS}
    assert set(SHAPES_TASKS) == {'shapes-comvg', 'shapes-refcocog', 'shapes-vqa'}
    with pytest.raises(ValueError, match="dataset: unknown 'mscoco'"): load_records('mscoco')
    with pytest.raises(ValueError, match='limit: expected an int >= 1'): load_records('comvg', *comvg, limit=0)

# The shapes world stays as it was -------------------------------------------------------------------------------

def _digest_split(split, n, seed, size=32, two_objects=1.0):
    from discffusion.shapes import make_split, caption
    h = hashlib.sha256()
    for ex in make_split(split, n, seed=seed, size=size, two_objects=two_objects):
        h.update(np.asarray(ex.image).tobytes()); h.update(repr(ex.scene).encode()); h.update(ex.caption.encode())
        h.update(repr(sorted((k, caption(v)) for k, v in ex.negatives.items())).encode())
    return h.hexdigest()[:16]

def test_make_split_and_toy_data_unchanged():
    "Digests taken on main before the miniature tasks were added: their renders and streams leave these bytes alone."
    from discffusion.toy import training_data
    splits = [('train', 50, 0), ('val', 50, 1), ('test', 50, 0), ('test', 30, 3, 64, 0.5), ('train', 40, 0, 32, 0.75)]
    assert [_digest_split(*a) for a in splits] == \
           ['b5e222a986601528', '9aa860c4ee88999a', '171a9b86c9c31b86', '6b33d8d2db348d39', '4c4a9be5c91f6bc1']
    toy = [training_data(64, seed=0), training_data(64, seed=1, partial_captions=0.3)]
    digests = [hashlib.sha256(i.numpy().tobytes() + '\n'.join(c).encode()).hexdigest()[:16] for i, c in toy]
    assert digests == ['f10437b5f56e628b', '9e4896526705053e']

# The miniature tasks, their parts and shots ---------------------------------------------------------------------

@pytest.mark.parametrize('name', list(SHAPES_TASKS))
def test_task_parts_are_disjoint_and_seeded(name):
    train, test = load_records(name, split='train', n=80), load_records(name, split='test', n=80)
    pixels = lambda recs: {np.asarray(im).tobytes() for r in recs for im in r.images}
    assert not pixels(train) & pixels(test)
    again = load_records(name, split='test', n=80)
    assert [r.texts for r in again] == [r.texts for r in test] and pixels(again) == pixels(test)
    assert len(load_records(name)) == 300 and load_records(name).name == f'{name}-test'
    assert [r.texts for r in load_records(name, limit=10)] == [r.texts for r in subsample(load_records(name), 10)]

def test_shots_come_from_the_training_part(tmp_path):
    shots = load_shots('shapes-vqa', 16, seed=3)
    train = load_records('shapes-vqa', split='train')
    assert len(shots) == 16 and {r.group for r in shots} <= {r.group for r in train}
    assert all(np.array_equal(np.asarray(r.query), np.asarray(train[int(r.group)].query)) for r in shots)
    folder = tmp_path/'comvg'
    for split in ('train', 'test'): export_task('shapes-comvg', folder, split=split, n=20, fmt='comvg')
    shots = load_shots('comvg', 5, folder, folder/'images', seed=1)
    train_ids = {p.name for r in comvg_records(folder, folder/'images', split='train') for p in r.candidates}
    assert {p.name for r in shots for p in r.candidates} <= train_ids
    (folder/'comvg_train.csv').unlink()
    with pytest.raises(FileNotFoundError, match='no training part: .* has no comvg_train.csv'):
        load_shots('comvg', 5, folder, folder/'images')
    test_csv = folder/'compositional_visual_genome.csv'  # a file given to training is its training part
    with pytest.raises(ValueError, match='k: .* has 20 examples; need k=21 shots'):
        load_shots('comvg', 21, test_csv, folder/'images')
    (folder/'images'/'2000002.jpg').unlink()
    with pytest.raises(FileNotFoundError, match=r"2000002\.jpg' of ComVG id 2"):
        load_shots('comvg', 1, test_csv, folder/'images')
    with pytest.raises(ValueError, match="Winoground has only a 'test' part"): load_shots('winoground', 1, tmp_path)
    records = load_records('shapes-refcocog', split='train', n=40)
    assert draw_shots(records, 8, seed=0) == draw_shots(records, 8, seed=0) != draw_shots(records, 8, seed=1)

def test_export_generic_round_trip(tmp_path):
    for name in SHAPES_TASKS:
        want = load_records(name, split='train', n=25)
        for fmt in ('csv', 'jsonl'):
            got = load_records(fmt, export_task(name, tmp_path/fmt, split='train', n=25, fmt=fmt))
            fields = lambda recs: [(r.kind, r.texts, r.subset, r.group) for r in recs]
            assert fields(got) == fields(want)
            pairs = [(a, b) for g, w in zip(got, want) for a, b in zip(g.images, w.images)]
            assert all(np.array_equal(np.asarray(open_image(a)), np.asarray(b)) for a, b in pairs)
    with pytest.raises(ValueError, match="fmt: expected one of"): export_task('shapes-vqa', tmp_path, fmt='parquet')

# Bad input: one line that names the file and the row, or a correct result ----------------------------------------

def test_jsonl_row_that_is_an_array(tmp_path):
    (tmp_path/'d.jsonl').write_text('{"image": "a.png", "text": "a cat", "negatives": ["a dog"]}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r'line 2 of .*d\.jsonl is a JSON list; expected an object'):
        matching_records(tmp_path/'d.jsonl')
    (tmp_path/'w').mkdir(); (tmp_path/'w'/'examples.jsonl').write_text('"just a string"\n')
    with pytest.raises(ValueError, match=r'line 1 of .*examples\.jsonl is a JSON str'): winoground_records(tmp_path/'w')

from hypothesis import given, settings, HealthCheck, strategies as st

FUZZ = dict(max_examples=120, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
WORDS = ['a.png', 'b.png', 'missing.png', 'a cat', '', ' ', '\n', 'x\x00y', '1', '٣', '²', 'images/../a.png']
KEYS = ['image', 'text', 'negatives', 'negative_images', 'negative_1', 'negative_image_1', 'subset', 'id',
        'image_0', 'image_1', 'caption_0', 'caption_1', 'tag']
scalars = (st.none() | st.booleans() | st.integers(-3, 10**20) | st.floats(allow_nan=True) | st.sampled_from(WORDS)
           | st.text(max_size=6))
containers = lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=2)
values = st.recursive(scalars, containers, max_leaves=5)
rows = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), values, max_size=7) | values
cells = st.sampled_from(WORDS + [',', '"', '""', '"a,b"', '\r\n', '"x\ny"', 'subject', '7']) | st.text(max_size=5)
winoground_rows = st.fixed_dictionaries({c: values | st.sampled_from(WORDS) for c in WINOGROUND_COLUMNS})

def _folder():
    import tempfile
    d = Path(tempfile.mkdtemp())
    img(d/'a.png'); img(d/'b.png'); img(d/'images'/'a.png'); img(d/'images'/'b.png')
    return d

def _one_line_or_records(call, path: Path):
    "The call returns well-formed records, or fails with one line naming `path`."
    try: recs = call()
    except (ValueError, FileNotFoundError) as e:
        assert '\n' not in str(e) and path.name in str(e), repr(str(e))
        return
    for r in recs:
        assert isinstance(r, Record) and all(isinstance(t, str) and t.strip() for t in r.texts)
        assert all(Path(p).is_file() for p in (image_path(i) for i in r.images) if p is not None)

from discffusion.data import image_path

@settings(**FUZZ)
@given(st.lists(rows | winoground_rows, min_size=1, max_size=4), st.booleans())
def test_fuzz_jsonl_readers(lines, garbage):
    d = _folder()
    text = ''.join(json.dumps(r, allow_nan=True) + '\n' for r in lines) + ('{"unclosed": \n' if garbage else '')
    (d/'data.jsonl').write_text(text); (d/'examples.jsonl').write_text(text)
    _one_line_or_records(lambda: matching_records(d/'data.jsonl'), d/'data.jsonl')
    _one_line_or_records(lambda: load_records('jsonl', d/'data.jsonl'), d/'data.jsonl')
    _one_line_or_records(lambda: winoground_records(d), d/'examples.jsonl')

@settings(**FUZZ)
@given(st.lists(cells, min_size=1, max_size=4), st.lists(st.lists(cells, max_size=13), max_size=4),
       st.sampled_from(['matching', 'comvg', 'vqa']))
def test_fuzz_csv_readers(extra_header, body, reader):
    d = _folder()
    header = {'matching': ['image', 'text'], 'comvg': COMVG_COLUMNS, 'vqa': VQA_COLUMNS}[reader] + extra_header
    text = ','.join(header) + '\n' + ''.join(','.join(row) + '\n' for row in body)
    (d/'data.csv').write_text(text)
    call = {'matching': lambda: matching_records(d/'data.csv'), 'comvg': lambda: comvg_records(d/'data.csv', d),
            'vqa': lambda: vqa_records(d/'data.csv', d)}[reader]
    _one_line_or_records(call, d/'data.csv')

@settings(**FUZZ)
@given(st.binary(max_size=64), st.sampled_from(['data.csv', 'data.jsonl']))
def test_fuzz_arbitrary_bytes(content, name):
    d = _folder()
    (d/name).write_bytes(content)
    _one_line_or_records(lambda: matching_records(d/name), d/name)
