"""Fit a short target sequence with the NumPy reference engine and plain SGD, no PyTorch.

The toy of the classic NumPy LSTM walkthrough: four fixed random inputs, one target per step, the
squared error on the first unit of h, and the walkthrough's cell (h = o * c, no output tanh).

    python examples/toy_sequence.py
    python examples/toy_sequence.py --cell peephole --output-activation tanh
"""
import argparse

from gatedrnn.reference.train import fit_sequence

TARGETS = [-0.5, 0.2, 0.1, -0.5]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm", choices=["lstm", "peephole", "cifg", "mogrifier"])
    parser.add_argument("--output-activation", default="identity", choices=["identity", "tanh"])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    def report(iteration, loss):
        if iteration % 10 == 0 or iteration == args.iterations - 1:
            print(f"iteration {iteration:4d}  loss {loss:.3e}")

    result = fit_sequence(TARGETS, cell=args.cell, iterations=args.iterations, lr=args.lr, seed=args.seed,
                          output_activation=args.output_activation, callback=report)
    print("targets    ", " ".join(f"{y:+.4f}" for y in result.targets))
    print("predictions", " ".join(f"{y:+.4f}" for y in result.predictions))


if __name__ == "__main__":
    main()
