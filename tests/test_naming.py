from pathlib import Path

from patchscan.naming import parse_name

IDC = ("non-IDC", "IDC")
SKIN = ("benign", "malignant")


def test_idc_dataset_name() -> None:
    info = parse_name(Path("/d/8916/1/8916_idx5_x1001_y51_class1.png"), IDC)
    assert (info.group, info.x, info.y, info.truth) == ("8916", 1001, 51, "IDC")


def test_class_folder_gives_truth_and_parent_gives_group() -> None:
    info = parse_name(Path("/lab/caseA/Malignant/img_12.jpg"), SKIN)
    assert (info.group, info.x, info.y, info.truth) == ("caseA", None, None, "malignant")


def test_numeric_class_folder() -> None:
    info = parse_name(Path("/lab/p7/0/patch.png"), IDC)
    assert (info.group, info.truth) == ("p7", "non-IDC")


def test_plain_file_has_folder_group_and_no_truth() -> None:
    info = parse_name(Path("/lab/slide3/tile_x100_y250.png"), IDC)
    assert (info.group, info.x, info.y, info.truth) == ("slide3", 100, 250, None)
