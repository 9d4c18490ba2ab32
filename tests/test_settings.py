

def test_the_kernel_choosing_variables_are_recorded_as_set_and_only_those():
    from harness.core.environment import kernel_env

    environ = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576", "HOME": "/root"}
    assert kernel_env(environ) == {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576"}
    assert kernel_env({}) == {}
