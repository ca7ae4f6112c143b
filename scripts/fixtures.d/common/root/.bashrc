# imgferry fixture: root's bashrc (not history: must survive)
alias ll='ls -l'
