"""Function transforms: jit, grad, value_and_grad, jvp, hvp, hessian, jacobian, vmap, compile()."""
