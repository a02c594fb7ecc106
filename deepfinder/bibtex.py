r"""
@article{Moebel2021,
title = {Deep learning improves macromolecule identification in 3D cellular cryo-electron tomograms},
journal = {Nature Methods},
volume = {18},
number = {11},
pages = {1386--1394},
year = {2021},
doi = {10.1038/s41592-021-01275-4},
url = {https://doi.org/10.1038/s41592-021-01275-4},
author = {Moebel, Emmanuel and Martinez-Sanchez, Antonio and Lamm, Lorenz and Righetto, Ricardo D. and Wietrzynska, Wojciech and Albert, Sahradha and Larivi{\`e}re, Damien and Fourmentin, Eric and Pfeffer, Stefan and Ortiz, Julio and Baumeister, Wolfgang and Peng, Tingying and Engel, Benjamin D. and Kervrann, Charles}
}
"""
