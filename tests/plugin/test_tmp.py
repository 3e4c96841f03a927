def test_x(pytester):
    assert pytester
