hostnamectl set-hostname @FQDN@
ip link show eth0
cat /etc/machine-id
kinit admin@EXAMPLE.ORG
curl -s http://169.254.169.254/openstack/latest/meta_data.json
