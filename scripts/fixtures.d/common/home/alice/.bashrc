# imgferry fixture: alice's bashrc (must survive unless user-account runs)
export EDITOR=vi
