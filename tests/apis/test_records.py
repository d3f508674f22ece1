"""Records keyed by content (dbbd.apis.records): a changed key, an edited
record, an output changed, missing or outside the folder each make the
record stale, with the reason."""
import json
import os
import os.path as osp


def test_record_is_reused_only_while_everything_matches(tmp_path):
    from dbbd.apis.records import read_record, write_record
    folder = tmp_path / 'run'
    folder.mkdir()
    out = folder / 'out.txt'
    out.write_text('result 1')
    path = str(folder / 'rec.json')
    key = dict(config_sha256='abc', seed=(1, 2))
    write_record(path, 'train', key, dict(out=str(out)), seconds=2.0)
    rec, why = read_record(path, 'train', dict(config_sha256='abc',
                                               seed=[1, 2]))
    assert why == '' and rec['paths']['out'] == str(out)
    assert rec['files']['out']['path'] == 'out.txt'  # relative
    assert read_record(path, 'train', dict(config_sha256='abd', seed=[1, 2])
                       )[1] == 'made for another config, option or checkpoint'
    assert read_record(path, 'probe', key)[1] == 'a record of another format'
    out.write_text('result 2')
    assert read_record(path, 'train', key)[1] == \
        'its out changed since it was recorded'
    out.write_text('result 1')
    data = json.loads(open(path).read())
    data['fields']['seconds'] = 1.0
    open(path, 'w').write(json.dumps(data))
    assert 'edited' in read_record(path, 'train', key)[1]


def test_paths_must_stay_inside_the_folder(tmp_path):
    from dbbd.apis.records import relative_inside, resolve_inside
    inside = tmp_path / 'a'
    inside.mkdir()
    (inside / 'f').write_text('x')
    (tmp_path / 'g').write_text('y')
    os.symlink(tmp_path / 'g', inside / 'link')
    folder = str(inside)
    assert resolve_inside('f', folder) == osp.join(folder, 'f')
    for bad in ('../g', str(tmp_path / 'g'), 'link', '', None, 'missing',
                'http://host/f'):
        assert resolve_inside(bad, folder) is None, bad
    assert relative_inside(osp.join(folder, 'f'), folder) == 'f'
