"""tests/ref_endoqc_meta.py OUT - the endoqc site-metadata corpus: small blobs (one 4-byte tensor,
no network) whose endoqc metadata (labels, site_order, site_groups, endoqc_* thresholds) is
wrong in exactly one way, written into OUT/endoqc_meta/ for tests/test_endoqc.c, which opens each
with the blob reader (they are all valid safetensors) and hands it to mi_endoqc_sites_from_blob:

  bad_*.safetensors   must be refused; metadata "test_expect" holds the text the error must
                      contain (besides the file's path)
  ok_*.safetensors    must be read; test_endoqc.c checks what they say

The same files are seeds for a fuzz harness of mi_endoqc_sites_from_blob."""
import json
import os
import struct

import mi_ref

d = os.path.join(mi_ref.out_dir(), "endoqc_meta")
os.makedirs(d, exist_ok=True)
for f in os.listdir(d):  # a renamed case must not linger
    os.remove(os.path.join(d, f))

LABELS = ["oesophagus", "cardia", "fundus_a", "fundus_b", "antrum_a", "antrum_b", "bulb", "duodenum"]
ORDER = ["oesophagus", "cardia", "antrum_a", "antrum_b", "bulb", "duodenum", "fundus_a", "fundus_b"]
GROUPS = {"fundus": ["fundus_a", "fundus_b"], "antrum": ["antrum_a", "antrum_b"]}


def put(name, meta, raw_header=None):
    """A valid safetensors file: tensor 'a' (F32 [1]) and the metadata (or a hand-written header)."""
    h = raw_header if raw_header is not None else json.dumps(
        {"__metadata__": meta, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    h = h.encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(d, name), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + struct.pack("<f", 1.0))


def meta(labels=LABELS, order=ORDER, groups=GROUPS, **extra):
    m = {"arch": "test", "labels": json.dumps(labels)}
    if order is not None:
        m["site_order"] = json.dumps(order)
    if groups is not None:
        m["site_groups"] = groups if isinstance(groups, str) else json.dumps(groups)
    m.update(extra)
    return m


def bad(name, expect, m):
    put("bad_" + name + ".safetensors", dict(m, test_expect=expect))


# --- what must be read ---------------------------------------------------------------------------
put("ok.safetensors", meta(endoqc_min_frames="3", endoqc_min_prob="0.25", endoqc_site_threshold="5"))
put("ok_defaults.safetensors", meta(order=None, groups=None))
# labels that JSON must escape, and the longest label there may be (63 bytes)
ODD = ['say "ah"', "back\\slash", "x" * 63, "tab-free/ok", "ünïcode", "e", "f", "g"]
put("ok_odd_labels.safetensors", meta(labels=ODD, order=None, groups={"odd": ODD[:3]}))
put("ok_max_groups.safetensors", meta(groups={f"g{i}": [LABELS[i]] for i in range(8)}))
# no site_groups: the standard fundus and antrum groups where the labels have them; {} means none
STD = ["oesophagus", "cardia_scj", "antrum_gc", "antrum_pw", "antrum_aw", "antrum_lc", "duodenal_bulb",
       "descending_duodenum", "fundus_gc", "fundus_pw", "fundus_aw", "fundus_lc"]
put("ok_std_groups.safetensors", meta(labels=STD, order=None, groups=None))
put("ok_std_no_fundus_lc.safetensors", meta(labels=STD[:-1], order=None, groups=None))
put("ok_std_empty_groups.safetensors", meta(labels=STD, order=None, groups={}))

# --- site_groups -----------------------------------------------------------------------------------
REP = "metadata 'site_groups' group '%s' repeats '%s'"
bad("groups_repeat_once", REP % ("fundus", "fundus_a"),
    meta(groups={"fundus": ["fundus_a", "fundus_a", "fundus_b"], "antrum": ["antrum_a"]}))
bad("groups_repeat_70", REP % ("fundus", "fundus_a"), meta(groups={"fundus": ["fundus_a"] * 70}))
g = {f"g{i}": [LABELS[i]] for i in range(7)}
g["big"] = ["fundus_b"] * 5000                                     # the 8th group: the last allowed
bad("groups_repeat_5000_in_8th", REP % ("big", "fundus_b"), meta(groups=g))
bad("groups_nine", "metadata 'site_groups' has more than 8 groups",
    meta(groups={f"g{i}": [LABELS[i % 8]] for i in range(9)}))
bad("groups_unknown_label", "metadata 'site_groups' group 'fundus' names 'fundus_z', which is not one of the labels",
    meta(groups={"fundus": ["fundus_a", "fundus_z"]}))
bad("groups_not_string", "metadata 'site_groups' group 'fundus' names '(not a string)'",
    meta(groups={"fundus": ["fundus_a", 7]}))
bad("groups_empty_group", "metadata 'site_groups' group 'antrum' is not a non-empty array of labels",
    meta(groups={"fundus": ["fundus_a"], "antrum": []}))
bad("groups_group_not_array", "metadata 'site_groups' group 'fundus' is not a non-empty array of labels",
    meta(groups={"fundus": "fundus_a"}))
bad("groups_name_repeated", "metadata 'site_groups': group name 'fundus' is repeated",
    meta(groups='{"fundus": ["fundus_a"], "fundus": ["fundus_b"]}'))
bad("groups_name_too_long", "metadata 'site_groups': group name '" + "n" * 32 + "' is too long",
    meta(groups={"n" * 32: ["fundus_a"]}))
bad("groups_name_empty", "metadata 'site_groups': group name '' is empty", meta(groups={"": ["fundus_a"]}))
bad("groups_name_newline", "metadata 'site_groups': group name 'a\\x0ab' contains a control character",
    meta(groups={"a\nb": ["fundus_a"]}))
bad("groups_not_object", "metadata 'site_groups' is not a JSON object", meta(groups='["fundus_a"]'))
bad("groups_trailing", "metadata 'site_groups' is not a JSON object", meta(groups='{"fundus": ["fundus_a"]} x'))
bad("groups_not_json", "metadata 'site_groups' is not a JSON object", meta(groups="fundus: fundus_a"))

# --- site_order --------------------------------------------------------------------------------------
bad("order_repeat", "metadata 'site_order' entry 3 'cardia' is repeated",
    meta(order=["oesophagus", "cardia", "cardia"] + ORDER[3:]))
bad("order_unknown", "metadata 'site_order' entry 8 'pylorus' is not one of the labels",
    meta(order=ORDER[:7] + ["pylorus"]))
bad("order_count", "metadata 'site_order' has 9 names for 8 classes", meta(order=ORDER + ["bulb"]))
bad("order_huge", "metadata 'site_order' has 100000 names for 8 classes", meta(order=["bulb"] * 100000))
bad("order_not_array", "metadata 'site_order' is not a JSON array", meta(order=None, site_order='{"a": 1}'))

# --- labels ------------------------------------------------------------------------------------------
bad("labels_missing", "metadata 'labels' is missing", {"arch": "test"})
bad("labels_repeat", "metadata 'labels' entry 5 'cardia' is repeated",
    meta(labels=LABELS[:4] + ["cardia"] + LABELS[5:], order=None, groups=None))
bad("labels_too_long", "metadata 'labels' entry 2 '" + "y" * 64 + "' is too long",
    meta(labels=["a", "y" * 64], order=None, groups=None))
bad("labels_empty", "metadata 'labels' entry 1 '' is empty", meta(labels=["", "b"], order=None, groups=None))
bad("labels_escape", "metadata 'labels' entry 2 'a\\x1b[2Jb' contains a control character",
    meta(labels=["a", "a\x1b[2Jb"], order=None, groups=None))
bad("labels_one", "metadata 'labels' names 1 classes; a site classifier has 2..64",
    meta(labels=["a"], order=None, groups=None))
bad("labels_65", "metadata 'labels' names 65 classes; a site classifier has 2..64",
    meta(labels=[f"s{i}" for i in range(65)], order=None, groups=None))

# --- verdict defaults --------------------------------------------------------------------------------
bad("min_prob_above_1", "metadata 'endoqc_min_prob' 1.5 is not in [0, 1]", meta(endoqc_min_prob="1.5"))
bad("min_prob_nan", "metadata 'endoqc_min_prob' = 'nan' is not a finite number", meta(endoqc_min_prob="nan"))
bad("min_frames_zero", "metadata 'endoqc_min_frames' = '0' is not an integer in [1, 1000000]",
    meta(endoqc_min_frames="0"))
bad("threshold_above_sites", "metadata 'endoqc_site_threshold' = '9' is not an integer in [0, 8]",
    meta(endoqc_site_threshold="9"))
