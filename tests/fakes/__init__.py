"""Contract mocks of services no test on this machine can run for real."""
