"""Real- and imaginary-time dynamics of neural quantum states (t-VMC / TDVP): ``distnqs evolve``.

- :mod:`distnqs.dynamics.tdvp`: the parameter velocity (real-parameter TDVP, regularizations);
- :mod:`distnqs.dynamics.integrators`: Runge-Kutta tableaus (euler, heun, rk4, adaptive rk23);
- :mod:`distnqs.dynamics.observables`: local values of sigma^x and nearest-neighbour sigma^z sigma^z;
- :mod:`distnqs.dynamics.exact`: exact evolution of small systems (expm_multiply);
- :mod:`distnqs.dynamics.evolve`: the jitted step, the job of the run lifecycle, :func:`evolve`.
"""
