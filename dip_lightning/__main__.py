from dip_lightning.cli import main

main()
