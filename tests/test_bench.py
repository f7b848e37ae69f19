"""make bench's choice of what to measure."""


def test_bench_skips_bfloat16_methods_where_bfloat16_is_emulated():
    from batch_style.bench import runnable

    asked = ["seed", "default", "lbfgs", "lbfgs-mixed", "lbfgs-bf16"]
    assert runnable(asked, native_bfloat16=True) == (asked, [])
    # "default" stays: its precision is "auto", which picks float32 on such hardware.
    assert runnable(asked, native_bfloat16=False) == (["seed", "default", "lbfgs"],
                                                      ["lbfgs-mixed", "lbfgs-bf16"])
