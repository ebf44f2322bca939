"""The recipes `patchscan-train cv` compares, named apart from the code that trains them so that the
command line can offer them without importing TensorFlow."""

# Recipes compared fold by fold: "plain" is the task's own; "reinhard" standardises each slide's
# colours (stain.py) before training and scoring; "strong-colour" trains with stronger stain and
# colour augmentation (augment.for_histology_strong); "light-outline" counts the patches on the
# annotation's outline less in the loss (cv.LIGHT_OUTLINE, through boundary.loss_weights: their
# labels are the least sure).
VARIANTS = ("plain", "reinhard", "strong-colour", "light-outline")
# Scorings at test time only, of the plain recipe's fold models (so compared with plain on the
# very same models, without two trainings' spread between them): "plain+reinhard" standardises
# each held-out slide's colours onto the training slides' average before scoring (the model never
# saw standardised patches); "plain+adabn" re-estimates the batch norms on each held-out slide
# (adapt.py), "plain+adabn-half" mixes the slide's statistics half and half with training's.
TEST_TIME = ("plain+reinhard", "plain+adabn", "plain+adabn-half")


def scored_recipe(scoring: str) -> str:
    """The recipe whose fold models a test-time scoring scores: plain+adabn -> plain."""
    return scoring.split("+", 1)[0]


def ensemble_name(recipe: str, members: int) -> str:
    """The name of an ensemble of `members` models of `recipe`, each trained alike: plain-x2."""
    return f"{recipe}-x{members}"


def members_of(variant: str) -> tuple[str, int]:
    """A variant's recipe and how many models of it are averaged: plain-x2 -> (plain, 2),
    plain -> (plain, 1)."""
    recipe, _, count = variant.rpartition("-x")
    if recipe and count.isdigit() and int(count) >= 2:
        return recipe, int(count)
    return variant, 1
