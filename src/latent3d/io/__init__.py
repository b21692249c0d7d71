"""File formats: ``depth`` (PNG-16, the LDM3D packing, depth <-> disparity), ``ply`` (3DGS splats, point clouds),
``mesh`` (GLB / OBJ / PLY), ``image``, ``video``, ``volume`` (radiance grids as .npz), ``atomic`` (atomic writes);
reading untrusted input: ``files`` (regular files, walks that stay in the dataset), ``manifest`` (dataset JSON) and
``model_folder`` (model and run folders)."""
