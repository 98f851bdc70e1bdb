from pathlib import Path

from setuptools import find_packages, setup


def requirements() -> list[str]:
    lines = Path(__file__).with_name("requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="ti-suite",
    version="0.1.0",
    description="Textual Inversion training for Stable Diffusion 1.x, 2.x and SDXL",
    packages=find_packages(include=["library", "library.*"]),
    package_data={"library": ["resources/**/*"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=requirements(),
    extras_require={
        # the small pure-Python optimizer packages too, so their tests run for real instead of being skipped
        # tensorboard: the logging tests read real event files. wandb (a 20 MB wheel plus dependencies) is left out;
        # its offline test runs where it is installed (pip install .[logging])
        "test": ["pytest>=7", "lion-pytorch", "prodigyopt", "schedulefree", "dadaptation", "tensorboard"],
        "gpu": ["xformers", "bitsandbytes"],
        "optimizers": ["lion-pytorch", "prodigyopt", "schedulefree", "dadaptation"],
        "logging": ["tensorboard", "wandb"],
    },
)
