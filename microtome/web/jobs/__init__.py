"""The torch-side background workers of the web microscope: the render queue, inspect jobs and
search by photo, one busy slot each. Torch is imported inside the work, never at import time;
nothing here imports pages/, present/ or server/."""
