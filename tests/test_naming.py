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


def test_a_class_number_beyond_the_models_classes_is_no_truth() -> None:
    """`_class2` names no class of a two-class model: no truth, not an IndexError."""
    info = parse_name(Path("/d/8916/8916_idx5_x1_y1_class2.png"), IDC)
    assert (info.group, info.x, info.y, info.truth) == ("8916", 1, 1, None)
    assert parse_name(Path("/lab/p7/2/patch.png"), IDC).truth is None  # nor a folder `2/`


def test_a_class_folder_one_level_further_up_still_gives_truth() -> None:
    info = parse_name(Path("/lab/caseA/Malignant/day1/img_12.jpg"), SKIN)
    assert (info.group, info.truth) == ("day1", "malignant")
    far = parse_name(Path("/lab/Malignant/caseA/day1/img_12.jpg"), SKIN)
    assert far.truth is None  # three levels up is not the image's class any more


def test_the_dataset_name_wins_over_folders_and_suffix_case() -> None:
    info = parse_name(Path("/d/benign/8916_idx5_x1001_y51_class1.PNG"), IDC)
    assert (info.group, info.x, info.y, info.truth) == ("8916", 1001, 51, "IDC")
    plain = parse_name(Path("/lab/slide3/tile_x100_y250_class0.png"), IDC)
    assert (plain.group, plain.x, plain.y, plain.truth) == ("slide3", 100, 250, "non-IDC")


def test_only_the_last_dot_starts_the_extension() -> None:
    """A dotted slide name (a scanner's "slide.v2") keeps what follows its first dot."""
    info = parse_name(Path("/lab/s/slide.v2_x100_y50.png"), IDC)
    assert (info.x, info.y) == (100, 50)
    info = parse_name("/d/16896.5_idx5_x101_y1_class0.png", IDC)
    assert (info.group, info.x, info.y, info.truth) == ("16896.5", 101, 1, "non-IDC")


def test_a_name_without_an_extension_is_read_whole() -> None:
    info = parse_name("/lab/s/tile_x1_y23", IDC)
    assert (info.x, info.y) == (1, 23)
