"""What pages share, below the views: the app's state, the model catalog, links, the artifacts of
a unit as page data, grids, sections, similarity, atlases, SAE features. Imports only jobs/ (for
the state's workers) and the library; never pages/ or server/."""
