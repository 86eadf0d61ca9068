"""Switch ports <-> TAPs: the mapping, the TAPs themselves, their holder, and the frame relay."""
