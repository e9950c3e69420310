from tunekit.study.retrain import variant_label


def test_the_winner_as_searched_owns_best_and_variants_get_readable_folders():
    assert variant_label(None, None, None) is None
    assert variant_label(9, None, ["optimizer.lr=3e-4"]) == "pick-9-set-optimizer.lr-3e-4"
    assert variant_label(None, 40, None) == "best-epochs-40"


def test_overrides_that_differ_only_in_replaced_characters_get_their_own_folders():
    slash, dash = variant_label(None, None, ["data.path=a/b.csv"]), variant_label(None, None, ["data.path=a-b.csv"])
    assert slash != dash and dash == "best-set-data.path-a-b.csv"
    long = ["optimizer.lr=0.001", "model.hidden=[512, 512, 512]", "train.batch_size=128"]
    assert variant_label(None, None, long) != variant_label(None, None, long[:2])
