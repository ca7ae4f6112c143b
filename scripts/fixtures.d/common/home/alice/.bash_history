ssh @FQDN@
sudo -i
